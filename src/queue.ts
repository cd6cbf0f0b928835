import type pg from 'pg'

/**
 * ops.runs is the queue. Every operation is one statement that also appends the run event of the
 * transition, and every change a worker makes is fenced on its lease (locked_by): a worker whose
 * lease expired (and whose run was taken by another) cannot overwrite the other's result.
 */
export const RUNS_CHANNEL = 'hookgate_runs'

export type RunStatus = 'received' | 'processing' | 'completed' | 'retrying' | 'failed' | 'exception' | 'ignored'

export interface ClaimedRun {
  run_id: string
  provider: string
  event_type: string | null
  payload: unknown
  attempts: number
  lease_expired: boolean
}

const CLAIM = `
WITH candidates AS (
  SELECT run_id, status FROM ops.runs
  WHERE (status IN ('received', 'retrying') AND next_attempt_at <= now())
     OR (status = 'processing' AND locked_until < now() AND attempts < $4)
  ORDER BY next_attempt_at
  LIMIT $1
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE ops.runs r
  SET status = 'processing', attempts = r.attempts + 1, locked_by = $2,
      locked_until = now() + make_interval(secs => $3::float8 / 1000), started_at = coalesce(r.started_at, now())
  FROM candidates c
  WHERE r.run_id = c.run_id
  RETURNING r.run_id, r.provider, r.event_type, r.payload, r.attempts, c.status = 'processing' AS lease_expired
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data)
  SELECT run_id, 'processing', jsonb_build_object('attempt', attempts, 'worker', $2::text, 'lease_expired', lease_expired) FROM claimed
)
SELECT * FROM claimed`

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
  RETURNING run_id, attempts
)
INSERT INTO ops.run_events (run_id, type, data)
SELECT run_id, 'failed', jsonb_build_object('attempt', attempts, 'error', 'lease expired after the last attempt') FROM given_up`

/** A run that kills its worker every time must not be taken forever: after the last attempt it fails. */
export async function failExhaustedLeases (pool: pg.Pool, maxAttempts: number): Promise<void> {
  await pool.query({ name: 'fail-exhausted-leases', text: GIVE_UP, values: [maxAttempts] })
}

export async function renewLease (pool: pg.Pool, runId: string, worker: string, leaseMs: number): Promise<void> {
  await pool.query({
    name: 'renew-lease',
    text: "UPDATE ops.runs SET locked_until = now() + make_interval(secs => $3::float8 / 1000) WHERE run_id = $1 AND locked_by = $2 AND status = 'processing'",
    values: [runId, worker, leaseMs]
  })
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

const FINISH = `
WITH updated AS (
  UPDATE ops.runs
  SET status = $3,
      next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $4::float8 / 1000) END,
      completed_at = CASE WHEN $3 IN ('completed', 'failed', 'ignored', 'exception') THEN now() END,
      last_error = $5, locked_by = NULL, locked_until = NULL
  WHERE run_id = $1 AND locked_by = $2 AND status = 'processing'
  RETURNING run_id
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data) SELECT run_id, $3, $6::jsonb FROM updated
), raised AS (
  INSERT INTO ops.exceptions (run_id, reason, details) SELECT run_id, $7, $8::jsonb FROM updated WHERE $7::text IS NOT NULL
)
SELECT count(*)::int AS finished FROM updated`

/** Records how an attempt ended; false if this worker no longer held the run (its lease expired). */
export async function finishRun (pool: pg.Pool, runId: string, worker: string, finish: Finish): Promise<boolean> {
  const { rows } = await pool.query<{ finished: number }>({
    name: 'finish-run',
    text: FINISH,
    values: [runId, worker, finish.status, finish.retryInMs ?? null, finish.error ?? null, JSON.stringify(finish.data),
      finish.exception?.reason ?? null, JSON.stringify(finish.exception?.details ?? {})]
  })
  return rows[0].finished === 1
}

const RELEASE = `
WITH released AS (
  UPDATE ops.runs SET status = 'retrying', next_attempt_at = now(), locked_by = NULL, locked_until = NULL
  WHERE locked_by = $1 AND status = 'processing'
  RETURNING run_id, attempts
)
INSERT INTO ops.run_events (run_id, type, data)
SELECT run_id, 'retrying', jsonb_build_object('attempt', attempts, 'error', 'handed back: the worker shut down') FROM released`

/** On shutdown: the runs this worker could not finish go back to the queue at once. */
export async function releaseRuns (pool: pg.Pool, worker: string): Promise<void> {
  await pool.query(RELEASE, [worker])
}

const REQUEUE = `
WITH requeued AS (
  UPDATE ops.runs SET status = 'received', attempts = 0, next_attempt_at = now(), completed_at = NULL, last_error = NULL
  WHERE run_id = $1 AND status <> 'processing'
  RETURNING run_id
), logged AS (
  INSERT INTO ops.run_events (run_id, type, data) SELECT run_id, $2, $3::jsonb FROM requeued
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
