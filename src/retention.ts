import type pg from 'pg'

/**
 * Retention (sql/011 lays out the partitions). A day of runs is a partition of ops.runs_live, and its
 * history the partition of ops.run_events_live with the same bounds: when the day has been over for
 * RETENTION_DAYS, the runs a human may still need move to the 'held' tier and the two tables are
 * detached and dropped, never emptied row by row. The held runs leave, a few at a time, once their
 * review is over. Keys (ops.run_keys) outlive their runs for DEDUP_DAYS. One replica does the work
 * at a time (an advisory lock); the others find it taken and skip.
 */
export interface RetentionSettings {
  /** Completed and ignored runs are kept this many days after their day ends. */
  retentionDays: number
  /** Failed runs: this long after they failed; runs with an exception: this long after it closed. */
  reviewDays: number
  /** Deliveries without a run (refusals, handshakes): this long. */
  refusalsDays: number
  /** Idempotency keys and replay hashes: this long (never less than a run is kept). */
  dedupDays: number
}

export interface MaintenanceReport {
  /** Another replica held the lock: nothing was done. */
  skipped: boolean
  /** Partitions created ahead. */
  created: number
  /** Tables dropped (partitions of expired days, the legacy table once it expired whole). */
  dropped: string[]
  /** Runs moved to the held tier before their day was dropped. */
  held: number
  /** Held runs removed, their review over. */
  released: number
  keysPruned: number
  /**
   * This replica's clock minus the database's, in ms (the midpoint of the round trip that read it).
   * Past the bound (CLOCK_SKEW_LIMIT_MS) the pass is skipped: retention decides by the database's clock.
   */
  clockSkewMs: number
  /** Skipped because of that difference. */
  clockSkewed: boolean
}

export interface PassOptions {
  /** The time the pass decides by; default the database's now() (tests move it). */
  at?: Date
  /** This replica's clock (ms since the epoch), compared with the database's. */
  replicaNow?: () => number
  /** Largest difference between the two clocks a pass accepts; default DEFAULT_CLOCK_SKEW_LIMIT_MS. */
  maxSkewMs?: number
}

/** CLOCK_SKEW_LIMIT_MS's default (src/config.ts). */
export const DEFAULT_CLOCK_SKEW_LIMIT_MS = 60_000

/** Days of partitions kept ready ahead of today. */
export const DAYS_AHEAD = 3
const DAY_MS = 86_400_000
/** Any fixed 64-bit number, apart from the migrations'. */
export const MAINTENANCE_LOCK = 7_364_526_170_212
const BATCH = 5000
/** Batches of keys or held runs removed per pass at most: the rest waits for the next pass. */
const MAX_BATCHES = 200

/** A UTC day as partitions name it: 20261130. */
export function dayName (at: Date): string {
  return at.toISOString().slice(0, 10).replaceAll('-', '')
}

/** The start of the UTC day a partition is named after. */
export function dayStart (name: string): Date {
  return new Date(`${name.slice(0, 4)}-${name.slice(4, 6)}-${name.slice(6, 8)}T00:00:00Z`)
}

/** The days (YYYYMMDD) whose whole day ended more than `keepDays` before `now`: theirs to drop. */
export function expiredDays (days: readonly string[], now: Date, keepDays: number): string[] {
  return days.filter(day => dayStart(day).getTime() + DAY_MS <= now.getTime() - keepDays * DAY_MS).sort()
}

/**
 * The settings as a retention the docs can promise: keys live at least a day longer than the runs
 * they identify (a day's partition is dropped only when the whole day has expired), so every run that
 * is not held still has its key: a duplicate of it is recognised and its key finds it.
 */
export function keyHorizonDays (settings: RetentionSettings): number {
  return Math.max(settings.dedupDays, settings.retentionDays + 1)
}

// What a human may still need: a run not processed to its end, a failed run or one stopped on an
// exception until `review` days after it ended, and a run with an exception open or closed less
// than `review` days ago. $1: now, $2: review days.
const KEPT = `((status NOT IN ('completed', 'ignored') AND (status NOT IN ('failed', 'exception')
      OR coalesce(completed_at, 'infinity') > $1::timestamptz - make_interval(days => $2)))
  OR run_id IN (SELECT run_id FROM ops.exceptions WHERE status = 'open' OR closed_at > $1::timestamptz - make_interval(days => $2)))`

const COLUMNS = 'run_id, provider, idempotency_key, event_type, status, payload, body_sha256, headers, received_at, started_at, completed_at, ' +
  'attempts, last_error, metadata, next_attempt_at, locked_by, locked_until, replay_sha256'

/**
 * One pass: partitions ahead, expired days held and dropped, the legacy table once it has expired,
 * audit rows, held runs whose review is over, keys past their horizon. Every decision reads the
 * database's clock, never this replica's: a replica whose clock runs ahead would drop today's
 * partitions and forget keys early. A replica whose clock differs from the database's by more than
 * `maxSkewMs` does nothing but report it (skipped, clockSkewMs).
 */
export async function maintain (pool: pg.Pool, settings: RetentionSettings, options: PassOptions = {}): Promise<MaintenanceReport> {
  const report: MaintenanceReport = { skipped: false, created: 0, dropped: [], held: 0, released: 0, keysPruned: 0, clockSkewMs: 0, clockSkewed: false }
  const replicaNow = options.replicaNow ?? Date.now
  const client = await pool.connect()
  // A connection lost mid-pass (the server restarts) fails the pass's next statement, not the process.
  const lost = (): void => {}
  client.on('error', lost)
  let broken: Error | undefined
  try {
    const before = replicaNow()
    const { rows: [clock] } = await client.query<{ now: Date }>('SELECT now()')
    report.clockSkewMs = Math.round((before + replicaNow()) / 2 - clock.now.getTime())
    if (Math.abs(report.clockSkewMs) > (options.maxSkewMs ?? DEFAULT_CLOCK_SKEW_LIMIT_MS)) return { ...report, skipped: true, clockSkewed: true }
    const now = options.at ?? clock.now
    const { rows: [lock] } = await client.query<{ taken: boolean }>('SELECT pg_try_advisory_lock($1) AS taken', [MAINTENANCE_LOCK])
    if (!lock.taken) return { ...report, skipped: true }
    try {
      report.created = await ensurePartitions(client, now)
      const review = [now, settings.reviewDays]
      for (const day of expiredDays(await tableDays(client, '(runs|run_events)_p'), now, settings.retentionDays)) {
        report.held += await dropRuns(client, review, `runs_p${day}`, `run_events_p${day}`, report.dropped)
      }
      // The tables of before migration 011 (empty on a new install) go when their newest run has expired.
      const { rows: [legacy] } = await client.query<{ runs: boolean, events: boolean }>(
        "SELECT to_regclass('ops.runs_legacy') IS NOT NULL AS runs, to_regclass('ops.run_events_legacy') IS NOT NULL AS events")
      const expired = legacy.runs
        ? (await client.query<{ expired: boolean }>("SELECT coalesce((SELECT max(received_at) FROM ops.runs_legacy), '-infinity') < $1::timestamptz - make_interval(days => $2) AS expired",
            [now, settings.retentionDays])).rows[0].expired
        : legacy.events
      if (expired) report.held += await dropRuns(client, review, 'runs_legacy', 'run_events_legacy', report.dropped)
      for (const day of expiredDays(await tableDays(client, 'run_events_audit_p'), now, settings.refusalsDays)) {
        await detach(client, 'run_events_audit', `run_events_audit_p${day}`)
        await client.query(`DROP TABLE ops.run_events_audit_p${day}`)
        report.dropped.push(`run_events_audit_p${day}`)
      }
      report.released = await releaseHeld(client, review, settings.retentionDays)
      report.keysPruned = await pruneKeys(client, new Date(now.getTime() - keyHorizonDays(settings) * DAY_MS))
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [MAINTENANCE_LOCK])
    }
    return report
  } catch (err) {
    broken = err as Error
    throw err
  } finally {
    client.off('error', lost)
    client.release(broken)
  }
}

/**
 * Today's partitions and DAYS_AHEAD days more, where missing; how many tables were made. Today is the
 * database's (UTC), unless `at` says otherwise (a pass whose time was moved).
 */
export async function ensurePartitions (client: pg.ClientBase, at?: Date): Promise<number> {
  const { rows: [row] } = await client.query<{ made: number }>(
    `WITH today AS (SELECT coalesce($1::date, (now() AT TIME ZONE 'UTC')::date) AS d)
     SELECT ops.ensure_day_partitions(d, d + $2::int) AS made FROM today`, [at?.toISOString().slice(0, 10) ?? null, DAYS_AHEAD])
  return row.made
}

/**
 * The days (YYYYMMDD) of the tables named `<prefix>YYYYMMDD`: the partitions, and any a pass that
 * stopped half-way left detached (the next pass ends its work).
 */
async function tableDays (client: pg.ClientBase, prefix: string): Promise<string[]> {
  const { rows } = await client.query<{ day: string }>(
    `SELECT DISTINCT substring(relname FROM '[0-9]{8}$') AS day FROM pg_class
     WHERE relnamespace = 'ops'::regnamespace AND relkind = 'r' AND relname ~ $1`, [`^${prefix}[0-9]{8}$`])
  return rows.map(row => row.day)
}

/**
 * Detaches a partition without taking a lock that would stop ingest (CONCURRENTLY: it waits for the
 * statements that may still use it). A detach that an earlier pass began and could not end is finished.
 */
async function detach (client: pg.ClientBase, parent: string, table: string): Promise<void> {
  const { rows: [state] } = await client.query<{ pending: boolean | null }>(
    'SELECT (SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhparent = $2::regclass) AS pending',
    [`ops.${table}`, `ops.${parent}`])
  if (state.pending === null) return
  await client.query(`ALTER TABLE ops.${parent} DETACH PARTITION ops.${table} ${state.pending ? 'FINALIZE' : 'CONCURRENTLY'}`)
}

/**
 * Drops a table of runs and the table of their histories: the runs still needed move to the held tier
 * first (with their history), then both are detached, runs that became needed in between are copied
 * over from the detached table, and the tables are dropped. Returns how many runs were held.
 */
async function dropRuns (client: pg.ClientBase, review: unknown[], runs: string, events: string, dropped: string[]): Promise<number> {
  const legacy = runs.endsWith('legacy')
  const { rows: [exists] } = await client.query<{ runs: boolean, events: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS runs, to_regclass($2) IS NOT NULL AS events', [`ops.${runs}`, `ops.${events}`])
  let held = 0
  await client.query('BEGIN')
  try {
    if (exists.runs) {
      const { rows } = await client.query<{ run_id: string }>(
        `UPDATE ops.runs SET tier = 'held' WHERE run_id IN (SELECT run_id FROM ops.${runs} WHERE ${KEPT}) RETURNING run_id`, review)
      held = rows.length
      if (held > 0 && exists.events) {
        await client.query(`UPDATE ops.run_events SET tier = 'held' WHERE run_id IN (SELECT run_id FROM ops.${events} WHERE run_id = ANY ($1::uuid[]))`,
          [rows.map(row => row.run_id)])
      }
    }
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
  if (exists.runs) await detach(client, legacy ? 'runs' : 'runs_live', runs)
  if (exists.events) await detach(client, legacy ? 'run_events' : 'run_events_live', events)
  await client.query('BEGIN')
  try {
    if (exists.runs) {
      const { rowCount } = await client.query(
        `INSERT INTO ops.runs (${COLUMNS}, tier) SELECT ${COLUMNS}, 'held' FROM ops.${runs} WHERE ${KEPT}`, review)
      held += rowCount ?? 0
      // The exceptions of the runs that go (closed long ago: an open one would have kept its run).
      await client.query(`DELETE FROM ops.exceptions e WHERE EXISTS (SELECT FROM ops.${runs} r WHERE r.run_id = e.run_id)
        AND NOT EXISTS (SELECT FROM ops.runs_held h WHERE h.run_id = e.run_id)`)
    }
    if (exists.events) {
      await client.query(`INSERT INTO ops.run_events (id, run_id, type, at, data, tier)
        SELECT id, run_id, type, at, data, 'held' FROM ops.${events} WHERE run_id IN (SELECT run_id FROM ops.runs_held)`)
    }
    await client.query(`DROP TABLE IF EXISTS ops.${runs}, ops.${events}`)
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
  dropped.push(...[exists.runs ? runs : [], exists.events ? events : []].flat())
  return held
}

/** Held runs whose review is over (and whose day has expired), removed in small batches with their history and exceptions. */
async function releaseHeld (client: pg.ClientBase, review: unknown[], retentionDays: number): Promise<number> {
  let released = 0
  for (let batch = 0; batch < MAX_BATCHES; batch++) {
    const { rows: [row] } = await client.query<{ n: number }>(`
      WITH gone AS (
        DELETE FROM ops.runs_held WHERE run_id IN (
          SELECT run_id FROM ops.runs_held
          WHERE received_at < $1::timestamptz - make_interval(days => $3) AND NOT ${KEPT}
          LIMIT ${BATCH})
        RETURNING run_id
      ), history AS (
        DELETE FROM ops.run_events_held WHERE run_id IN (SELECT run_id FROM gone)
      ), reviewed AS (
        DELETE FROM ops.exceptions WHERE run_id IN (SELECT run_id FROM gone)
      )
      SELECT count(*)::int AS n FROM gone`, [...review, retentionDays])
    released += row.n
    if (row.n < BATCH) break
  }
  return released
}

/** Keys received before `horizon`, except those of held runs, removed in small batches. */
async function pruneKeys (client: pg.ClientBase, horizon: Date): Promise<number> {
  let pruned = 0
  for (let batch = 0; batch < MAX_BATCHES; batch++) {
    const { rowCount } = await client.query(`
      DELETE FROM ops.run_keys WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM ops.run_keys k
        WHERE received_at < $1 AND NOT EXISTS (SELECT FROM ops.runs_held h WHERE h.run_id = k.run_id)
        LIMIT ${BATCH}))`, [horizon])
    pruned += rowCount ?? 0
    if ((rowCount ?? 0) < BATCH) break
  }
  return pruned
}
