import type pg from 'pg'
import type { Static } from 'typebox'
import { RUNS_CHANNEL, requeueRun } from '../queue.js'
import { HttpError } from '../errors.js'
import { sha256 } from '../signatures.js'
import type { Exception, Run, RunDetail, RunFilter } from './schemas.js'

/**
 * The admin API's SQL, behind typed methods (plugins/admin.ts decorates its scope with one): the
 * routes validate and answer, the repository reads and writes. Keyset pagination everywhere: a page
 * starts after the cursor row, never at an offset.
 */
export interface AdminRepository {
  listRuns: (filter: Static<typeof RunFilter>) => Promise<{ runs: Array<Static<typeof Run>>, next_cursor: string | null }>
  /**
   * The run with its payload, stored headers, history (its first EVENTS_SHOWN.first and last
   * EVENTS_SHOWN.last events, and how many there are) and exceptions (conflicting copies as
   * excerpts); undefined if there is none.
   */
  getRun: (runId: string) => Promise<Static<typeof RunDetail> | undefined>
  /** Requeues a run from its stored payload: `processing` while an attempt runs, `not_found` if there is none. */
  replayRun: (runId: string, decision: Decision) => Promise<'requeued' | 'processing' | 'not_found'>
  listExceptions: (status: 'open' | 'resolved' | 'dismissed', cursor: string | undefined, limit: number) => Promise<{ exceptions: Array<Static<typeof Exception>>, next_cursor: string | null }>
  /**
   * Erases the payloads of one provider's runs that match a key, or a value at a JSON path (a
   * customer's data), keeping the audit facts: hashes, times, outcome, history. An `erased` run
   * event records who, why and what matched (the value as its hash). Runs not processed yet end as
   * `ignored`; runs being processed are left alone and listed. By path, one call reads a page of
   * `scan` runs after `cursor` (bounded time whatever the table holds); `next_cursor` goes on.
   */
  eraseRuns: (request: Erasure) => Promise<{ erased: string[], processing: string[], scanned: number, next_cursor: string | null, more: boolean }>
  /** The console's overview: the queue, the review queue, and the runs received in the last `hours`, per `bucketSeconds`. */
  overview: (hours: number, bucketSeconds: number) => Promise<Overview>
  /** Deliveries that made no run (refusals, handshakes) in the last `hours`, by provider, reason and client. */
  refusals: (hours: number) => Promise<Array<{ provider: string, type: string, reason: string | null, client_ip: string | null, count: number, last: string }>>
  /** The run holding an idempotency key, whichever of `providers` it came from (ops.run_keys: one index lookup each). */
  findRunByKey: (providers: readonly string[], idempotencyKey: string) => Promise<string | undefined>
  /** One kept copy of a payload conflict, whole, by its body hash; undefined if there is none. */
  exceptionCopy: (exceptionId: string, bodySha256: string) => Promise<{ body_sha256: string, payload?: unknown, delivery?: unknown, payload_erased?: boolean } | undefined>
  /** One exception, by its id (a list of none or one). */
  listExceptionsOf: (exceptionId: string) => Promise<{ exceptions: Array<Static<typeof Exception>> }>
  /** How many runs a bulk retry with this filter would take (failed and exception runs only). */
  countRetryable: (filter: RetryFilter) => Promise<number>
  /**
   * Bulk retry: up to `limit` runs matching the filter queued again, oldest first, due one after
   * another at `perSecond` (next_attempt_at spread out), so that live deliveries, due at once, are
   * claimed between them. Their open exceptions are resolved with `retry`; each run's history says who.
   */
  retryRuns: (filter: RetryFilter, limit: number, perSecond: number, decision: Decision) => Promise<{ requeued: number, seconds: number }>
  /** Closes an open exception and the run follows; 404 / 409 (HttpError) if there is none or it is closed. */
  closeException: (exceptionId: string, status: 'resolved' | 'dismissed', decision: Decision & { action?: 'retry' | 'close' }) => Promise<Static<typeof Exception>>
}

export interface Decision { note?: string, by: string }
export interface RetryFilter { statuses: Array<'failed' | 'exception'>, provider?: string, eventType?: string, since?: string, until?: string }

// The runs a bulk retry takes: failed or stopped on an exception, matching the filter, oldest first.
const RETRYABLE = `
SELECT run_id, status, received_at FROM ops.runs
WHERE status = ANY($1::text[]) AND ($2::text IS NULL OR provider = $2) AND ($3::text IS NULL OR event_type = $3)
  AND ($4::timestamptz IS NULL OR received_at >= $4) AND ($5::timestamptz IS NULL OR received_at < $5)`

const BULK_RETRY = `
WITH target AS (
  ${RETRYABLE}
  ORDER BY received_at, run_id
  LIMIT $6
  FOR UPDATE SKIP LOCKED
), numbered AS (
  SELECT run_id, status, row_number() OVER (ORDER BY received_at, run_id) - 1 AS n FROM target
), requeued AS (
  UPDATE ops.runs r SET status = 'received', attempts = 0, completed_at = NULL, last_error = NULL,
    next_attempt_at = now() + make_interval(secs => t.n / $7::float8)
  FROM numbered t WHERE r.run_id = t.run_id
  RETURNING r.run_id, t.status AS was, t.n, r.tier
), closed AS (
  UPDATE ops.exceptions e SET status = 'resolved', closed_at = now(), closed_by = $8, resolution = 'retry', note = $9
  FROM requeued q WHERE e.run_id = q.run_id AND e.status = 'open'
  RETURNING e.run_id, e.exception_id
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data, tier)
  SELECT run_id, 'replay_requested', jsonb_build_object('by', $8::text, 'note', $9::text, 'bulk', true, 'status_before', was, 'due_in_s', round(n / $7::numeric, 2)), tier FROM requeued
  UNION ALL
  SELECT c.run_id, 'exception_resolved', jsonb_build_object('exception_id', exception_id, 'by', $8::text, 'note', $9::text, 'action', 'retry', 'bulk', true), q.tier
  FROM closed c JOIN requeued q USING (run_id)
)
SELECT count(*)::int AS requeued, coalesce(max(n), 0)::float8 / $7::float8 AS seconds, (SELECT count(*) FROM pg_notify('${RUNS_CHANNEL}', '')) AS woken FROM requeued`

const retryValues = (f: RetryFilter): unknown[] => [f.statuses, f.provider ?? null, f.eventType ?? null, f.since ?? null, f.until ?? null]
export interface Overview {
  waiting: number
  oldest_seconds: number
  open_exceptions: number
  failed_last_day: number
  /** Runs received in the period, by provider and status. */
  period: Array<{ provider: string, status: string, count: number }>
  /** Per bucket of the period (0: the latest): new runs by provider, and the other outcomes of deliveries (refused, duplicate, conflict or replay). */
  buckets: Array<{ bucket: number, series: string, count: number }>
}
export type Erasure = Decision & { provider: string, limit: number } & ({ idempotencyKey: string } | { path: string[], value: string, cursor?: string, scan: number })

/** The erased payload: what a handler, the admin API and the console see from then on. */
export const ERASED = { erased: true }

// $1 provider, $2 key or null, $3 path or null, $4 value, $5 the erased payload, $6 limit, $7 by, $8 note,
// $9 what matched, $10 the run id the scan starts after (by path), $11 runs scanned at most (by path).
// By key: the key's run (an index lookup). By path: the next $11 runs in run id order, of every
// provider, are read (a page, never the whole table: an erasure by path is bounded whatever the table
// holds, and `next_cursor` says where to go on). Of each erased run, besides the payload and headers:
// what another party echoed in its last error, its history and its exceptions (a destination's
// answer, a conflicting copy), and its key is marked erased so that no later delivery keeps a body.
const ERASE = `
WITH page AS (
  SELECT run_id, provider, status, payload FROM ops.runs
  WHERE $3::text[] IS NOT NULL AND ($10::uuid IS NULL OR run_id > $10) ORDER BY run_id LIMIT $11
), candidates AS (
  SELECT run_id, status, payload FROM page WHERE provider = $1 AND payload #>> $3::text[] = $4
  UNION ALL
  SELECT run_id, status, payload FROM ops.runs
  WHERE $2::text IS NOT NULL AND provider = $1 AND run_id IN (SELECT run_id FROM ops.run_keys WHERE provider = $1 AND idempotency_key = $2)
), target AS (
  SELECT run_id, status FROM ops.runs WHERE run_id IN (SELECT run_id FROM candidates WHERE status <> 'processing' AND payload <> $5::jsonb)
  ORDER BY run_id
  LIMIT $6
  FOR UPDATE
), erased AS (
  UPDATE ops.runs r
  SET payload = $5::jsonb, headers = '{}'::jsonb,
      status = CASE WHEN r.status IN ('received', 'retrying') THEN 'ignored' ELSE r.status END,
      completed_at = CASE WHEN r.status IN ('received', 'retrying') THEN now() ELSE r.completed_at END,
      last_error = CASE WHEN r.status IN ('received', 'retrying') THEN 'payload erased before it was processed' ELSE ops.without_echo(r.last_error) END
  FROM target t
  WHERE r.run_id = t.run_id
  RETURNING r.run_id, r.provider, r.idempotency_key, t.status AS was, r.tier
), keys AS (
  UPDATE ops.run_keys k SET erased = true FROM erased WHERE k.provider = erased.provider AND k.idempotency_key = erased.idempotency_key
), exceptions AS (
  UPDATE ops.exceptions e SET details = CASE
    WHEN jsonb_typeof(e.details->'copies') = 'array' THEN jsonb_set(e.details, '{copies}', (
      SELECT coalesce(jsonb_agg((c - 'payload' - 'excerpt') || '{"payload_erased": true}'::jsonb ORDER BY n), '[]')
      FROM jsonb_array_elements(e.details->'copies') WITH ORDINALITY AS x (c, n)))
    ELSE (SELECT coalesce(jsonb_object_agg(k, v), '{}') FROM jsonb_each(e.details) AS d (k, v) WHERE k IN ('destination', 'status'))
      || '{"details_erased": true}'::jsonb END
  FROM erased WHERE e.run_id = erased.run_id
), history AS (
  UPDATE ops.run_events h SET data = h.data || jsonb_strip_nulls(jsonb_build_object(
      'error', ops.without_echo(h.data->>'error'), 'reason', ops.without_echo(h.data->>'reason')))
  FROM erased WHERE h.run_id = erased.run_id AND (h.data ? 'error' OR h.data ? 'reason')
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data, tier)
  SELECT run_id, 'erased', jsonb_build_object('by', $7::text, 'note', $8::text, 'status_before', was, 'matched', $9::jsonb), tier FROM erased
)
SELECT (SELECT coalesce(array_agg(run_id ORDER BY run_id), '{}') FROM erased) AS erased,
  (SELECT coalesce(array_agg(run_id ORDER BY run_id), '{}') FROM candidates WHERE status = 'processing') AS processing,
  (SELECT count(*)::int FROM page) AS scanned,
  CASE WHEN (SELECT count(*) FROM erased) = $6 THEN (SELECT run_id FROM erased ORDER BY run_id DESC LIMIT 1)
    WHEN (SELECT count(*) FROM page) = $11 THEN (SELECT run_id FROM page ORDER BY run_id DESC LIMIT 1) END AS next_cursor`

const LIST_RUNS = `
SELECT run_id, provider, idempotency_key, event_type, status, attempts, received_at, started_at, completed_at, next_attempt_at, last_error
FROM ops.runs
WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR event_type = $3)
  AND ($4::timestamptz IS NULL OR received_at >= $4) AND ($5::timestamptz IS NULL OR received_at < $5)
  AND ($6::uuid IS NULL OR (received_at, run_id) < (SELECT received_at, run_id FROM ops.runs WHERE run_id = $6))
ORDER BY received_at DESC, run_id DESC
LIMIT $7`

// An exception as lists and run pages show it: a payload conflict's copies without their payloads
// (each keeps its hash, its deliveries, the first one's facts with body_bytes, and the excerpt stored
// with it: nothing is serialised here); each copy whole from exceptionCopy.
const EXCEPTIONS = `
SELECT e.exception_id, e.run_id, r.provider, r.event_type, e.reason, e.status, e.created_at,
       e.closed_at, e.closed_by, e.resolution, e.note,
       CASE WHEN jsonb_typeof(e.details->'copies') = 'array' THEN jsonb_set(e.details, '{copies}', (
         SELECT coalesce(jsonb_agg(c - 'payload' ORDER BY n), '[]') FROM jsonb_array_elements(e.details->'copies') WITH ORDINALITY AS x (c, n)))
       ELSE e.details END AS details
FROM ops.exceptions e JOIN ops.runs r USING (run_id)`

/** Events of a run shown at most: the first and the latest (a flood of repeats is counted, not listed). */
export const EVENTS_SHOWN = { first: 100, last: 400 }

const RUN_EVENTS = `
WITH history AS (SELECT id, type, at, data FROM ops.run_events WHERE run_id = $1)
SELECT type, at, data, (SELECT count(*)::int FROM history) AS total FROM (
  (SELECT * FROM history ORDER BY id LIMIT ${EVENTS_SHOWN.first})
  UNION
  (SELECT * FROM history ORDER BY id DESC LIMIT ${EVENTS_SHOWN.last})
) AS shown ORDER BY id`

/** A run that stopped on an exception ends when the exception is closed or dismissed (completed or ignored). */
const END_RUN = `
WITH ended AS (
  UPDATE ops.runs SET status = $2, completed_at = now() WHERE run_id = $1 AND status = 'exception' RETURNING run_id
)
INSERT INTO ops.run_events (run_id, type, data, tier) VALUES ($1, $3, $4::jsonb, ops.event_tier($1))`

/**
 * `pool` is the primary: every write, and every read a write depends on. `reads` serves the lists and
 * the run page: DATABASE_READ_URL's replica when set (what it shows may lag the primary), else `pool`.
 */
export function adminRepository (pool: pg.Pool, reads: pg.Pool = pool): AdminRepository {
  return {
    async listRuns (q) {
      const { rows } = await reads.query(LIST_RUNS,
        [q.provider ?? null, q.status ?? null, q.event_type ?? null, q.since ?? null, q.until ?? null, q.cursor ?? null, q.limit])
      return { runs: rows, next_cursor: rows.length === q.limit ? rows[rows.length - 1].run_id : null }
    },

    async getRun (runId) {
      const { rows: [run] } = await reads.query('SELECT * FROM ops.runs WHERE run_id = $1', [runId])
      if (run === undefined) return undefined
      const [{ rows: shown }, { rows: exceptions }] = await Promise.all([
        reads.query<{ type: string, at: string, data: unknown, total: number }>(RUN_EVENTS, [runId]),
        reads.query(`${EXCEPTIONS} WHERE e.run_id = $1 ORDER BY e.created_at`, [runId])
      ])
      const events = shown.map(({ total: _total, ...event }) => event)
      return { ...run, events, events_total: shown[0]?.total ?? 0, exceptions }
    },

    async replayRun (runId, decision) {
      if (await requeueRun(pool, runId, 'replay_requested', { by: decision.by, note: decision.note })) return 'requeued'
      const { rowCount } = await pool.query('SELECT 1 FROM ops.runs WHERE run_id = $1', [runId])
      return rowCount === 0 ? 'not_found' : 'processing'
    },

    async overview (hours, bucketSeconds) {
      const [{ rows: [counts] }, { rows: period }, { rows: buckets }] = await Promise.all([
        reads.query(`SELECT
            (SELECT count(*) FROM ops.runs WHERE status IN ('received', 'retrying'))::int AS waiting,
            (SELECT coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0) FROM ops.runs
              WHERE status IN ('received', 'retrying') AND next_attempt_at <= now())::float8 AS oldest_seconds,
            (SELECT count(*) FROM ops.exceptions WHERE status = 'open')::int AS open_exceptions,
            (SELECT count(*) FROM ops.runs WHERE status = 'failed' AND received_at > now() - interval '1 day')::int AS failed_last_day`),
        reads.query(`SELECT provider, status, count(*)::int AS count FROM ops.runs
          WHERE received_at > now() - make_interval(hours => $1) GROUP BY 1, 2 ORDER BY 1, 2`, [hours]),
        reads.query(`SELECT floor(extract(epoch FROM now() - received_at) / $2)::int AS bucket, provider AS series, count(*)::int AS count
            FROM ops.runs WHERE received_at > now() - make_interval(hours => $1) GROUP BY 1, 2
          UNION ALL
          SELECT floor(extract(epoch FROM now() - at) / $2)::int, 'refused',
              sum(CASE WHEN type = 'rejected_aggregate' THEN (data->>'count')::int ELSE 1 END)::int
            FROM ops.run_events WHERE run_id IS NULL AND type IN ('rejected', 'rejected_aggregate') AND at > now() - make_interval(hours => $1) GROUP BY 1
          UNION ALL
          SELECT floor(extract(epoch FROM now() - at) / $2)::int, CASE type WHEN 'duplicate' THEN 'duplicate' ELSE 'conflict or replay' END, count(*)::int
            FROM ops.run_events WHERE type IN ('duplicate', 'payload_conflict', 'replayed_body') AND at > now() - make_interval(hours => $1) GROUP BY 1, 2`, [hours, bucketSeconds])
      ])
      return { ...counts, period, buckets }
    },

    async refusals (hours) {
      const { rows } = await reads.query(`SELECT data->>'provider' AS provider, type, data->>'reason' AS reason,
          coalesce(data->>'client_ip', data->>'client') AS client_ip,
          sum(CASE WHEN type = 'rejected_aggregate' THEN (data->>'count')::int ELSE 1 END)::int AS count, max(at) AS last
        FROM ops.run_events WHERE run_id IS NULL AND at > now() - make_interval(hours => $1)
        GROUP BY 1, 2, 3, 4 ORDER BY count DESC LIMIT 200`, [hours])
      return rows
    },

    async findRunByKey (providers, idempotencyKey) {
      const { rows: [row] } = await reads.query(
        `SELECT k.run_id FROM ops.run_keys k JOIN ops.runs r USING (run_id)
         WHERE (k.provider, k.idempotency_key) IN (SELECT p, $2::text FROM unnest($1::text[]) AS p) LIMIT 1`,
        [providers, idempotencyKey])
      return row?.run_id
    },

    async exceptionCopy (exceptionId, bodySha256) {
      const { rows: [row] } = await reads.query<{ copy: { body_sha256: string, payload?: unknown, delivery?: unknown, payload_erased?: boolean } | null }>(
        `SELECT (SELECT c FROM jsonb_array_elements(details->'copies') AS c WHERE c->>'body_sha256' = $2 LIMIT 1) AS copy
         FROM ops.exceptions WHERE exception_id = $1`, [exceptionId, bodySha256])
      return row?.copy ?? undefined
    },

    async listExceptionsOf (exceptionId) {
      const { rows } = await reads.query(`${EXCEPTIONS} WHERE e.exception_id = $1`, [exceptionId])
      return { exceptions: rows }
    },

    async countRetryable (filter) {
      const { rows: [row] } = await reads.query(`SELECT count(*)::int AS n FROM (${RETRYABLE}) AS matching`, retryValues(filter))
      return row.n
    },

    async retryRuns (filter, limit, perSecond, decision) {
      const { rows: [row] } = await pool.query(BULK_RETRY, [...retryValues(filter), limit, perSecond, decision.by, decision.note ?? null])
      return { requeued: row.requeued, seconds: row.seconds }
    },

    async listExceptions (status, cursor, limit) {
      const { rows } = await reads.query(
        `${EXCEPTIONS} WHERE e.status = $1
           AND ($2::uuid IS NULL OR (e.created_at, e.exception_id) < (SELECT created_at, exception_id FROM ops.exceptions WHERE exception_id = $2))
         ORDER BY e.created_at DESC, e.exception_id DESC LIMIT $3`, [status, cursor ?? null, limit])
      return { exceptions: rows, next_cursor: rows.length === limit ? rows[rows.length - 1].exception_id : null }
    },

    async eraseRuns (request) {
      const byKey = 'idempotencyKey' in request
      // What matched is audited without the data itself: a value is kept as its hash.
      const matched = byKey ? { idempotency_key: request.idempotencyKey } : { path: request.path, value_sha256: sha256(Buffer.from(request.value)).toString('hex') }
      const { rows: [row] } = await pool.query<{ erased: string[], processing: string[], scanned: number, next_cursor: string | null }>(ERASE, [
        request.provider, byKey ? request.idempotencyKey : null, byKey ? null : request.path, byKey ? null : request.value,
        JSON.stringify(ERASED), request.limit, request.by, request.note ?? null, JSON.stringify(matched),
        byKey ? null : request.cursor ?? null, byKey ? 0 : request.scan
      ])
      return { ...row, more: row.next_cursor !== null }
    },

    // One transaction: the exception closes, the run follows (requeued, completed or ignored), both audited.
    async closeException (exceptionId, status, decision) {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        const { rows: [closed] } = await client.query(
          `UPDATE ops.exceptions SET status = $2, closed_at = now(), closed_by = $3, resolution = $4, note = $5
           WHERE exception_id = $1 AND status = 'open' RETURNING run_id`,
          [exceptionId, status, decision.by, decision.action ?? null, decision.note ?? null])
        if (closed === undefined) {
          await client.query('ROLLBACK')
          const { rowCount } = await pool.query('SELECT 1 FROM ops.exceptions WHERE exception_id = $1', [exceptionId])
          throw rowCount === 0
            ? new HttpError(404, 'not_found', 'no such exception')
            : new HttpError(409, 'conflict', 'the exception is already closed')
        }
        const audit = { exception_id: exceptionId, ...decision }
        const eventType = status === 'dismissed' ? 'exception_dismissed' : 'exception_resolved'
        if (decision.action === 'retry') {
          await requeueRun(client, closed.run_id, eventType, audit)
        } else {
          await client.query(END_RUN, [closed.run_id, status === 'dismissed' ? 'ignored' : 'completed', eventType, JSON.stringify(audit)])
        }
        await client.query('COMMIT')
        const { rows: [exception] } = await pool.query(`${EXCEPTIONS} WHERE e.exception_id = $1`, [exceptionId])
        return exception
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      } finally {
        client.release()
      }
    }
  }
}
