import type pg from 'pg'

/**
 * ops.runs is the queue. Every operation is one statement that also appends the run event of the
 * transition, and every change a worker makes is fenced on its lease (locked_by): a worker whose
 * lease expired (and whose run was taken by another) cannot overwrite the other's result.
 */
export const RUNS_CHANNEL = 'hookgate_runs'

/** Every status a run can have (the CHECK constraint of ops.runs.status, sql/001). */
export const RUN_STATUSES = ['received', 'processing', 'completed', 'retrying', 'failed', 'exception', 'ignored'] as const
export type RunStatus = typeof RUN_STATUSES[number]

export interface ClaimedRun {
  run_id: string
  provider: string
  event_type: string | null
  payload: unknown
  attempts: number
  lease_expired: boolean
}

// Two index scans that stop at the limit (runs_leased_idx, then runs_due_idx), never a sort of every
// open run: with one OR'd condition PostgreSQL read and sorted the whole backlog on every claim
// (7.7 ms with 2,000 open runs, 0.3 ms this way), so a backlog slowed the very claims that drain it.
// Runs of a dead worker (lease expired) go first: there are few, and they have waited longest.
// The claimed rows are then found by their keys (= ANY of the candidates' ids): with the join alone,
// the cached generic plan guessed a tenth of the table for LIMIT $1 and hashed a sequential scan of
// ops.runs on every claim once the table was analysed with a backlog in it (19 ms for 128 runs out of
// 40,000, 7 ms this way; growing with the table).
export const CLAIM = `
WITH expired AS (
  SELECT run_id, status FROM ops.runs
  WHERE status = 'processing' AND locked_until < now() AND attempts < $4
  ORDER BY locked_until
  LIMIT $1
  FOR UPDATE SKIP LOCKED
), due AS (
  SELECT run_id, status FROM ops.runs
  WHERE status IN ('received', 'retrying') AND next_attempt_at <= now()
  ORDER BY next_attempt_at
  LIMIT greatest(0, $1 - (SELECT count(*) FROM expired))
  FOR UPDATE SKIP LOCKED
), candidates AS (
  SELECT * FROM expired UNION ALL SELECT * FROM due
), claimed AS (
  UPDATE ops.runs r
  SET status = 'processing', attempts = r.attempts + 1, locked_by = $2,
      locked_until = now() + make_interval(secs => $3::float8 / 1000), started_at = coalesce(r.started_at, now())
  FROM candidates c
  WHERE r.run_id = c.run_id AND r.run_id = ANY (ARRAY(SELECT run_id FROM candidates))
  RETURNING r.run_id, r.provider, r.event_type, r.payload, r.attempts, c.status = 'processing' AS lease_expired, r.tier
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data, tier)
  SELECT run_id, 'processing', jsonb_build_object('attempt', attempts, 'worker', $2::text, 'lease_expired', lease_expired), tier FROM claimed
)
SELECT run_id, provider, event_type, payload, attempts, lease_expired FROM claimed`

/** Claims up to `limit` due runs (and runs whose worker's lease expired) for `worker`. */
export async function claimRuns (pool: pg.Pool, worker: string, limit: number, leaseMs: number, maxAttempts: number): Promise<ClaimedRun[]> {
  const { rows } = await pool.query<ClaimedRun>({ name: 'claim-runs', text: CLAIM, values: [limit, worker, leaseMs, maxAttempts] })
  return rows
}

const GIVE_UP = `
WITH given_up AS (
  UPDATE ops.runs SET status = 'failed', completed_at = now(), locked_by = NULL, locked_until = NULL,
    last_error = 'the lease expired on every attempt (the worker died while processing it)'
  WHERE status = 'processing' AND locked_until < now() AND attempts >= $1
  RETURNING run_id, attempts, tier
)
INSERT INTO ops.run_events (run_id, type, data, tier)
SELECT run_id, 'failed', jsonb_build_object('attempt', attempts, 'error', 'lease expired after the last attempt'), tier FROM given_up`

/** A run that kills its worker every time must not be taken forever: after the last attempt it fails. */
export async function failExhaustedLeases (pool: pg.Pool, maxAttempts: number): Promise<void> {
  await pool.query({ name: 'fail-exhausted-leases', text: GIVE_UP, values: [maxAttempts] })
}

// The heartbeat skips the runs whose rows are locked: those are being finished (by this worker's
// finish statement, whose outcome clears the lease anyway). Waiting for them instead let the two
// statements lock the same rows in different orders: PostgreSQL broke the deadlock by failing the
// finish, whose runs then waited out their lease (30 s) and were processed a second time.
const RENEW = `
UPDATE ops.runs SET locked_until = now() + make_interval(secs => $3::float8 / 1000)
WHERE run_id IN (
  SELECT run_id FROM ops.runs WHERE run_id = ANY ($1::uuid[]) AND locked_by = $2 AND status = 'processing'
  FOR UPDATE SKIP LOCKED
)`

/** One statement renews the leases of every run a worker holds (its heartbeat), not one per run. */
export async function renewLeases (pool: pg.Pool, runIds: readonly string[], worker: string, leaseMs: number): Promise<void> {
  await pool.query({ name: 'renew-leases', text: RENEW, values: [runIds, worker, leaseMs] })
}

export interface Finish {
  status: Exclude<RunStatus, 'received' | 'processing'>
  /** For `retrying`: when to try again. */
  retryInMs?: number
  error?: string
  /** Written into the run event: attempt, duration, outcome details. */
  data: Record<string, unknown>
  exception?: { reason: string, details: Record<string, unknown> }
}

export interface Finished extends Finish { runId: string }

// How a batch of attempts ended, in one statement (group commit, like ingest): each run's status,
// its run event and any exception. Fenced on the lease: a run this worker no longer holds (its
// lease expired and another worker took it) is left alone, and reported as not finished.
// The runs are found by their primary key: their ids again as an array ($3), and the status compared
// in a form no partial index matches. Left to the join, the cached generic plan scanned a partial index
// of open runs (runs_status_idx, runs_leased_idx), which the planner believes small after a vacuum but
// which holds an entry, dead or alive, for every run claimed since: 5 ms for 24 runs at 1,000 runs/s.
export const FINISH = `
WITH input AS (
  SELECT (f->>'run_id')::uuid AS run_id, f->>'status' AS status, (f->>'retry_in_ms')::float8 AS retry_in_ms,
    f->>'error' AS error, f->'data' AS data, f->'exception' AS exception, ord
  FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x (f, ord)
), updated AS (
  UPDATE ops.runs r
  SET status = i.status,
      next_attempt_at = CASE WHEN i.retry_in_ms IS NULL THEN r.next_attempt_at ELSE now() + make_interval(secs => i.retry_in_ms / 1000) END,
      completed_at = CASE WHEN i.status IN ('completed', 'failed', 'ignored', 'exception') THEN now() END,
      last_error = i.error, locked_by = NULL, locked_until = NULL
  FROM input i
  WHERE r.run_id = i.run_id AND r.run_id = ANY ($3::uuid[]) AND r.locked_by = $1 AND coalesce(r.status, '') = 'processing'
  RETURNING r.run_id, i.status, i.data, i.exception, i.ord, r.tier
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data, tier) SELECT run_id, status, data, tier FROM updated ORDER BY ord
), raised AS (
  INSERT INTO ops.exceptions (run_id, reason, details)
  SELECT run_id, exception->>'reason', exception->'details' FROM updated WHERE jsonb_typeof(exception) = 'object' ORDER BY ord
)
SELECT run_id FROM updated`

/** Records how a batch of attempts ended; answers, for each, false if this worker no longer held the run. */
export async function finishRuns (pool: pg.Pool, worker: string, finished: readonly Finished[]): Promise<boolean[]> {
  const items = finished.map(f => ({
    run_id: f.runId, status: f.status, retry_in_ms: f.retryInMs ?? null, error: f.error ?? null, data: f.data, exception: f.exception ?? null
  }))
  const { rows } = await pool.query<{ run_id: string }>({ name: 'finish-runs', text: FINISH, values: [worker, JSON.stringify(items), finished.map(f => f.runId)] })
  const recorded = new Set(rows.map(row => row.run_id))
  return finished.map(f => recorded.has(f.runId))
}

const RELEASE = `
WITH released AS (
  UPDATE ops.runs SET status = 'retrying', next_attempt_at = now(), locked_by = NULL, locked_until = NULL
  WHERE locked_by = $1 AND status = 'processing'
  RETURNING run_id, attempts, tier
)
INSERT INTO ops.run_events (run_id, type, data, tier)
SELECT run_id, 'retrying', jsonb_build_object('attempt', attempts, 'error', 'handed back: the worker shut down'), tier FROM released`

/** On shutdown: the runs this worker could not finish go back to the queue at once. */
export async function releaseRuns (pool: pg.Pool, worker: string): Promise<void> {
  await pool.query(RELEASE, [worker])
}

const REQUEUE = `
WITH requeued AS (
  UPDATE ops.runs SET status = 'received', attempts = 0, next_attempt_at = now(), completed_at = NULL, last_error = NULL
  WHERE run_id = $1 AND status <> 'processing'
  RETURNING run_id, tier
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data, tier) SELECT run_id, $2, $3::jsonb, tier FROM requeued
)
SELECT count(*)::int AS requeued FROM requeued, LATERAL (SELECT pg_notify('${RUNS_CHANNEL}', '')) AS wake`

/** Processes a run again from its stored payload (replay, or an exception resolved with "retry"). */
export async function requeueRun (pool: pg.Pool | pg.PoolClient, runId: string, eventType: string, data: Record<string, unknown>): Promise<boolean> {
  const { rows } = await pool.query<{ requeued: number }>(REQUEUE, [runId, eventType, JSON.stringify(data)])
  return rows[0].requeued === 1
}

/** Exponential backoff with equal jitter: between half and all of base·2^(attempt−1), capped. */
export function backoffMs (attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + random() * ceiling / 2)
}
