import type { IncomingHttpHeaders } from 'node:http'
import fp from 'fastify-plugin'
import { Gauge } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import { sha256 } from '../signatures.js'
import { SENSITIVE_HEADERS } from '../redact.js'
import { DatabaseUnavailableError, HttpError, OverloadedError } from '../errors.js'
import { RUNS_CHANNEL } from '../queue.js'
import { createBatcher } from '../batcher.js'
import { registerPool } from './database.js'

/**
 * Storing deliveries. A verified event is recorded by ONE statement (one round trip, one commit)
 * shared with the deliveries that arrived at the same moment (group commit, src/batcher.ts): the
 * key is inserted into ops.run_keys ON CONFLICT DO NOTHING, a new key gets its run, and a 'received'
 * or 'duplicate' run event is appended to whichever run holds the key. The handler answers only
 * after that statement has committed.
 */
export interface Delivery {
  provider: string
  idempotencyKey: string
  eventType: string | null
  /**
   * What the run starts as: `received` (to process), `ignored` (recorded, nothing to process: a
   * SePay outgoing transfer) or `completed` (no handler and no destination would do anything).
   */
  status: 'received' | 'ignored' | 'completed'
  /** The exact bytes the sender signed. */
  raw: Buffer
  /**
   * The body as JSON text in UTF-8, stored as `ops.runs.payload`: the received bytes themselves when
   * they are valid UTF-8 JSON (the common case: no copy), else the text they were read as.
   */
  payload: Buffer
  /**
   * The hash that says whether two deliveries carry the same content (payload conflicts, the replay
   * guard): ProviderDefinition.signedContent's, where the provider has one; default the raw bytes' hash.
   */
  contentHash?: Buffer
  /** Whether the same signed bytes under another key are a duplicate (ProviderDefinition.replayGuard). */
  replayGuard: 'body' | 'body+type' | undefined
  /** ProviderDefinition.replayStamp's value: part of the replay key. */
  replayStamp?: string
  /** The payload as parsed: what a run claimed at ingest hands to its handler. */
  event: unknown
}

export interface IngestResult { runId: string, status: 'accepted' | 'duplicate' | 'conflict' }

declare module 'fastify' {
  interface FastifyInstance {
    ingestDelivery: (request: FastifyRequest, delivery: Delivery) => Promise<IngestResult>
  }
}

// One statement, one commit, for a whole batch of deliveries (src/batcher.ts): the keys (ops.run_keys,
// the arbiter: a key is new, or held by a run, or by a run that retention removed inside DEDUP_DAYS),
// the new runs, one run event per delivery (in the tier of its run; 'audit' when the run is gone),
// the run's one open payload-conflict exception for the deliveries whose key arrives with different
// signed bytes (none when retention removed the run: nothing is left to compare; sql/013: it counts
// them, and keeps one copy of each distinct conflicting body up to MAX_CONFLICT_COPIES, sent once per
// body and batch, none of a run whose payload was erased), and one NOTIFY that wakes the workers
// (delivered at commit). Within a batch the first delivery of a key (marked `first` by
// batchParam) creates the run and the others are its duplicates: marked in the parameter, not found
// by a window and a DISTINCT ON in the statement, whose sorts and aggregates PostgreSQL set up for
// every batch, however small (docs/benchmarks.md, the lever table). A delivery of a replay-guarded
// provider (ProviderDefinition.replayGuard) whose key is new but whose signed bytes a run already
// holds is a duplicate of that run ('replayed_body'). A run that this process's worker will take
// (plugins/worker.ts, LocalWorker) is inserted claimed: `processing`, attempt 1, the worker's lease
// ($2 ms) and its `processing` event, and no NOTIFY. Keys are inserted in order so that two batches never wait on each other
// in a cycle. The statement snapshot cannot see a run committed by a concurrent batch while this
// INSERT waited on it: such a delivery gets no row and is sent again (a rare race). Keys already
// stored are looked up one by one (LATERAL ... LIMIT 1: an index probe each): a join let the plan
// cached while ops.run_keys was small read the whole table on every batch once it had grown. A stored
// run's tier comes from ops.event_tier (sql/012), which opens the partition of that run's day alone:
// joined here, the cached plan started a scan of every day's partition on every batch. Only a new
// run's status is used (a stored one's is NULL here).
/**
 * Distinct conflicting bodies kept per run for review: a captured delivery altered (a Twilio body with
 * `&=` appended, a GitHub body under another delivery id) can raise no more copies than this; the
 * conflicting deliveries past it are counted in the exception, never stored.
 */
export const MAX_CONFLICT_COPIES = 3
/** Characters of a kept conflicting copy stored beside it as its excerpt: what lists and run pages show. */
export const CONFLICT_EXCERPT_CHARS = 2000

export const INGEST = `
WITH input AS (
  SELECT ord, item->>0 AS provider, item->>1 AS idempotency_key, item->>2 AS event_type, item->3 AS payload,
    decode(item->>4, 'hex') AS body_sha256, item->5 AS headers, item->6 AS delivery, item->>7 AS status,
    decode(item->>8, 'hex') AS replay_sha256, item->>9 AS locked_by, (item->>10)::boolean AS first_body, (item->>11)::boolean AS first
  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS d (item, ord)
), firsts AS (
  SELECT * FROM input WHERE first
), keyed AS (
  INSERT INTO ops.run_keys (provider, idempotency_key, body_sha256, replay_sha256)
  SELECT provider, idempotency_key, body_sha256, replay_sha256 FROM firsts ORDER BY provider, idempotency_key
  ON CONFLICT DO NOTHING
  RETURNING run_id, provider, idempotency_key
), inserted AS (
  INSERT INTO ops.runs (run_id, provider, idempotency_key, event_type, payload, body_sha256, headers, status, replay_sha256, completed_at,
    attempts, started_at, locked_by, locked_until)
  SELECT k.run_id, provider, idempotency_key, f.event_type, f.payload, f.body_sha256, f.headers, f.status, f.replay_sha256,
    CASE WHEN f.status = 'completed' THEN now() END,
    CASE WHEN f.status = 'processing' THEN 1 ELSE 0 END, CASE WHEN f.status = 'processing' THEN now() END, f.locked_by,
    CASE WHEN f.status = 'processing' THEN now() + make_interval(secs => $2::float8 / 1000) END
  FROM keyed k JOIN firsts f USING (provider, idempotency_key)
  RETURNING run_id, provider, idempotency_key, body_sha256, status, replay_sha256
), by_key AS (
  SELECT run_id, provider, idempotency_key, body_sha256, status, 'live' AS tier, true AS created, false AS erased FROM inserted
  UNION ALL
  SELECT k.run_id, q.provider, q.idempotency_key, k.body_sha256, NULL, ops.event_tier(k.run_id), false, k.erased
  FROM firsts AS q
  CROSS JOIN LATERAL (
    SELECT run_id, body_sha256, erased FROM ops.run_keys WHERE provider = q.provider AND idempotency_key = q.idempotency_key LIMIT 1
  ) AS k
), by_body AS (
  SELECT run_id, provider, replay_sha256, body_sha256, status, 'live' AS tier FROM inserted WHERE replay_sha256 IS NOT NULL
  UNION ALL
  SELECT k.run_id, q.provider, q.replay_sha256, k.body_sha256, NULL, ops.event_tier(k.run_id)
  FROM (SELECT DISTINCT provider, replay_sha256 FROM input WHERE replay_sha256 IS NOT NULL) AS q
  CROSS JOIN LATERAL (
    SELECT run_id, body_sha256 FROM ops.run_keys WHERE provider = q.provider AND replay_sha256 = q.replay_sha256 LIMIT 1
  ) AS k
), run AS (
  SELECT d.ord, coalesce(k.run_id, b.run_id) AS run_id, coalesce(k.status, b.status) AS status, coalesce(k.tier, b.tier) AS tier,
    d.delivery, d.payload, d.body_sha256, d.locked_by, d.first_body, coalesce(k.erased, false) AS erased,
    coalesce(k.created, false) AND d.first AS is_new,
    k.run_id IS NULL AS replayed,
    d.body_sha256 <> coalesce(k.body_sha256, b.body_sha256) AS conflict
  FROM input d
  LEFT JOIN by_key k USING (provider, idempotency_key)
  LEFT JOIN by_body b ON k.run_id IS NULL AND b.provider = d.provider AND b.replay_sha256 = d.replay_sha256
  WHERE coalesce(k.run_id, b.run_id) IS NOT NULL
), appended AS (
  INSERT INTO ops.run_events (run_id, type, data, tier)
  SELECT run_id, type, data, tier FROM (
    SELECT ord, 1 AS seq, run_id, CASE WHEN is_new THEN 'received' WHEN replayed THEN 'replayed_body' WHEN conflict THEN 'payload_conflict' ELSE 'duplicate' END AS type, delivery AS data, tier
    FROM run
    UNION ALL
    SELECT ord, 2, run_id, 'completed', '{"attempt": 0, "nothing_to_do": true}'::jsonb, tier FROM run WHERE is_new AND status = 'completed'
    UNION ALL
    SELECT ord, 2, run_id, 'processing', jsonb_build_object('attempt', 1, 'worker', locked_by, 'lease_expired', false), tier FROM run WHERE is_new AND status = 'processing'
  ) AS events ORDER BY ord, seq
), raised AS (
  INSERT INTO ops.exceptions AS e (run_id, reason, details)
  SELECT run_id, 'payload_conflict', ops.conflict_details('{}', jsonb_build_object('copies', jsonb_agg(jsonb_build_object(
      'body_sha256', encode(body_sha256, 'hex'), 'delivery', delivery, 'payload', CASE WHEN first_body AND NOT erased THEN payload END,
      'excerpt', CASE WHEN first_body AND NOT erased THEN left(payload::text, ${CONFLICT_EXCERPT_CHARS}) END) ORDER BY ord)), ${MAX_CONFLICT_COPIES})
  FROM run WHERE conflict AND NOT replayed AND tier <> 'audit' GROUP BY run_id
  ON CONFLICT (run_id) WHERE reason = 'payload_conflict' AND status = 'open' DO UPDATE
  SET details = ops.conflict_details(e.details, EXCLUDED.details, ${MAX_CONFLICT_COPIES})
), wake AS (
  SELECT count(pg_notify('${RUNS_CHANNEL}', '')) FROM (SELECT FROM run WHERE is_new AND status = 'received' LIMIT 1) AS one
)
SELECT ord, run_id, is_new, conflict AND NOT replayed AS conflict FROM run, wake`

/**
 * One delivery as the batch statement takes it: a JSON array (provider, key, event type, payload,
 * body sha256 in hex, headers, delivery facts, status, replay hash in hex or null, the claiming worker
 * or null, then whether it is the first of its key and body hash, and of its key, in the batch), kept
 * as the text before the payload, the payload's bytes and the text after it but for the last element, which batchParam adds. The batch is
 * these joined into one JSON array (batchParam), parsed once by PostgreSQL; the payload goes in as the
 * JSON text it was validated as, copied once. `key` (provider and idempotency key) and `bodyHash` find
 * each key's first delivery in a batch.
 */
interface Row { key: string, bodyHash: string, head: string, payload: Buffer, tail: string }
interface StoredRow { run_id: string, is_new: boolean, conflict: boolean }

export default fp(async function ingest (fastify) {
  // Deliveries get connections of their own: slow admin queries or a busy worker never make a sender
  // wait. Two per statement slot, for a split batch and the rare look-again.
  const pool = await registerPool(fastify, {
    name: 'ingest',
    max: 2 * fastify.config.ingestBatch.concurrency,
    applicationName: 'hookgate-ingest',
    genericPlans: true
  })
  fastify.metrics.watchPool('ingest', pool)
  const maxPending = fastify.config.ingestBatch.maxPending
  const batcher = createBatcher<Row, StoredRow | undefined>({
    maxSize: fastify.config.ingestBatch.size,
    concurrency: fastify.config.ingestBatch.concurrency,
    lingerMs: fastify.config.ingestBatch.lingerMs,
    run: async rows => await storeBatch(rows)
  })

  fastify.metrics.registry.registerMetric(new Gauge({
    name: 'hookgate_ingest_pending',
    help: 'Deliveries waiting for, or inside, an ingest statement.',
    registers: [],
    collect () { this.set(batcher.pending) }
  }))
  const leaseMs = fastify.config.worker.leaseMs

  /** Stores a batch; a payload PostgreSQL refuses fails only its own delivery (the batch is split). */
  async function storeBatch (rows: Row[]): Promise<Array<StoredRow | undefined | Error>> {
    try {
      const { rows: stored } = await pool.query<StoredRow & { ord: string }>({ name: 'ingest-deliveries', text: INGEST, values: [batchParam(rows), leaseMs] })
      // No hole for a delivery that got no row (the race above): `undefined`, in its place.
      const byOrd = new Array<StoredRow | undefined>(rows.length).fill(undefined)
      for (const row of stored) byOrd[Number(row.ord) - 1] = row
      return byOrd
    } catch (err) {
      if (isDataError(err) && rows.length > 1) return await Promise.all(rows.map(async row => (await storeBatch([row]))[0]))
      return rows.map(() => storageError(err))
    }
  }

  fastify.decorate('ingestDelivery', async function ingestDelivery (request: FastifyRequest, delivery: Delivery): Promise<IngestResult> {
    const { provider, idempotencyKey, eventType, status, raw, payload, replayGuard, event } = delivery
    const identity = { provider, eventId: idempotencyKey, eventType }
    if (batcher.pending >= maxPending) {
      request.delivery = { ...identity, outcome: 'unavailable' }
      // The database cannot keep up: refuse now (the sender retries) rather than queue without end.
      fastify.metrics.shed.inc({ cause: 'ingest_queue_full' })
      throw new OverloadedError('ingest_queue_full')
    }
    const signatureHeaders = request.routeOptions.config.provider?.definition.signatureHeaders ?? []
    // The body is hashed once: for the payload-conflict check and, where guarded, the replay key.
    const bodyHash = delivery.contentHash ?? sha256(raw)
    const bodyHex = bodyHash.toString('hex')
    const replay = replayKey(replayGuard, bodyHash, eventType, delivery.replayStamp)
    // A run to process here (a slot free, no backlog): stored claimed, handed over after the commit.
    const claimedBy = status === 'received' && fastify.localWorker?.canTake() === true ? fastify.localWorker : null
    const row: Row = {
      key: `${provider}\n${idempotencyKey}`,
      bodyHash: bodyHex,
      head: `[${JSON.stringify(provider)},${JSON.stringify(idempotencyKey)},${JSON.stringify(eventType)},`,
      payload,
      tail: `,"${bodyHex}",${JSON.stringify(storableHeaders(request.headers, signatureHeaders))},` +
        `${JSON.stringify({ request_id: request.id, client_ip: request.ip, body_bytes: raw.length, ...(replay === null ? {} : { idempotency_key: idempotencyKey }) })},` +
        `"${claimedBy === null ? status : 'processing'}",${replay === null ? 'null' : `"${replay}"`},${claimedBy === null ? 'null' : JSON.stringify(claimedBy.id)}`
    }
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const run = await batcher.push(row)
        if (run !== undefined) {
          const status = run.is_new ? 'accepted' : run.conflict ? 'conflict' : 'duplicate'
          request.delivery = { ...identity, outcome: status, runId: run.run_id }
          if (claimedBy !== null && run.is_new) {
            claimedBy.take({ run_id: run.run_id, provider, event_type: eventType, payload: event, attempts: 1, lease_expired: false })
          }
          // A conflict is committed and answered 200, but a client that makes many is hostile: it
          // counts toward the client's limit like a refusal (its next deliveries get 429).
          if (run.conflict) await fastify.countRefusal(request)
          return { runId: run.run_id, status }
        }
      }
    } catch (err) {
      // Not committed (a 503, or a 400 for a payload PostgreSQL refuses): the errors plugin answers.
      request.delivery = { ...identity, outcome: 'unavailable' }
      throw err
    }
    request.delivery = { ...identity, outcome: 'unavailable' }
    throw new DatabaseUnavailableError('the delivery could not be recorded, try again')
  })
}, { name: 'ingest', dependencies: ['database', 'metrics', 'delivery-outcome'] })

/**
 * A batch's rows as one JSON array in jsonb's binary input form (a version byte, 1, then the JSON text):
 * a Buffer goes to PostgreSQL as a binary parameter, so the payloads are copied once, into this
 * buffer, instead of into each row's string, the batch's string and the protocol's buffer. Each row
 * ends with whether it is the first of its key and body hash in this batch (the one whose copy a payload
 * conflict may keep), then whether it is the first of its key (the one that may create the run).
 */
export function batchParam (rows: ReadonlyArray<Readonly<Row>>): Buffer {
  const keys = new Set<string>()
  const bodies = new Set<string>()
  const ends = rows.map(row => {
    const body = `${row.bodyHash}${row.key}`
    const firstBody = !bodies.has(body)
    bodies.add(body)
    const first = !keys.has(row.key)
    keys.add(row.key)
    return `,${firstBody},${first}]`
  })
  let size = 3 + Math.max(rows.length - 1, 0) // version byte, brackets, commas
  for (const [i, row] of rows.entries()) size += Buffer.byteLength(row.head) + row.payload.length + Buffer.byteLength(row.tail) + ends[i].length
  const param = Buffer.allocUnsafe(size)
  param[0] = 1
  param[1] = 0x5b // [
  let at = 2
  for (const [i, row] of rows.entries()) {
    if (i > 0) param[at++] = 0x2c // ,
    at += param.write(row.head, at)
    at += row.payload.copy(param, at)
    at += param.write(row.tail, at)
    at += param.write(ends[i], at)
  }
  param[at++] = 0x5d // ]
  return param
}

/**
 * The replay guard's key (ProviderDefinition.replayGuard), from the hash of the signed content: that
 * hash itself, or with the event type, and with the signed stamp (replayStamp) where there is one.
 * Null for a provider whose key is signed.
 */
export function replayKey (guard: Delivery['replayGuard'], bodyHash: Buffer, eventType: string | null, stamp?: string): string | null {
  if (guard === undefined) return null
  if (guard === 'body' && stamp === undefined) return bodyHash.toString('hex')
  const extra = `${guard === 'body+type' ? `\n${eventType ?? ''}` : ''}${stamp === undefined ? '' : `\n@${stamp}`}`
  return sha256(Buffer.concat([bodyHash, Buffer.from(extra)])).toString('hex')
}

/** Request headers worth keeping with the run: everything but credentials and signatures. */
function storableHeaders (headers: IncomingHttpHeaders, signatureHeaders: readonly string[]): Record<string, unknown> {
  const kept: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!SENSITIVE_HEADERS.has(name) && !signatureHeaders.includes(name)) kept[name] = value
  }
  return kept
}

/**
 * A payload PostgreSQL refuses to store (a \u0000 or a lone surrogate in a JSON string, nesting too deep)
 * is the sender's problem: 400, and retrying will not help. Anything else means we could not
 * commit: 503 so that the sender retries.
 */
function storageError (err: unknown): Error {
  if (isDataError(err)) return new HttpError(400, 'unstorable_payload', 'the payload cannot be stored as JSON')
  return new DatabaseUnavailableError('the database could not commit the delivery, try again', err)
}

/** Class 22 (data exception) or 54 (program limit: a JSON nested past PostgreSQL's stack depth). */
function isDataError (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('54'))
}
