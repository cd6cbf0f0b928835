import t, { type Test } from 'tap'
import pg from 'pg'
import { readdirSync } from 'node:fs'
import { MIGRATIONS_DIR, migrate } from '../src/db/migrate.js'
import { loadConfig } from '../src/config.js'
import { MAINTENANCE_LOCK, ensurePartitions, maintain, type RetentionSettings } from '../src/retention.js'
import { build, freshDatabase, stripeDelivery, stripeEvent } from './helper.js'

// Retention (src/retention.ts, sql/008–011) with a clock the test holds: days of runs dropped as
// tables once expired, what a human still needs kept, keys outliving runs, one replica at a time,
// and an install of the old layout moved over with its rows.

const DAY = 86_400_000
const SETTINGS: RetentionSettings = { retentionDays: 2, reviewDays: 1, refusalsDays: 1, dedupDays: 3 }

/** The test's database is dropped WITH (FORCE) at its end: an idle connection it cuts is no failure. */
function quiet (pool: pg.Pool): pg.Pool {
  pool.on('error', () => {})
  return pool
}

async function database (t: Test, target?: string): Promise<{ pool: pg.Pool, databaseUrl: string }> {
  const databaseUrl = await freshDatabase(t)
  await migrate(databaseUrl, target)
  const pool = quiet(new pg.Pool({ connectionString: databaseUrl, max: 4 }))
  t.teardown(async () => { await pool.end() })
  return { pool, databaseUrl }
}

/** A pass at `now`, waiting for one the app may be running to end first. */
async function pass (pool: pg.Pool, now: Date, settings = SETTINGS) {
  for (let i = 0; i < 100; i++) {
    const report = await maintain(pool, settings, { at: now })
    if (!report.skipped) return report
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error('the maintenance lock stayed taken')
}

const tables = async (pool: pg.Pool, pattern: string): Promise<string[]> =>
  (await pool.query("SELECT relname FROM pg_class WHERE relnamespace = 'ops'::regnamespace AND relkind IN ('r', 'p') AND relname ~ $1 ORDER BY 1", [pattern])).rows.map(r => r.relname)

/** A run stored at `at` (its id made then, as ingest would), with its key and a 'received' event. */
async function runAt (pool: pg.Pool, at: Date, fields: { key: string, status?: string, completedAt?: Date | null }): Promise<string> {
  const { rows: [row] } = await pool.query(`
    WITH key AS (
      INSERT INTO ops.run_keys (provider, idempotency_key, run_id, body_sha256, received_at)
      VALUES ('stripe', $2, ops.uuid_v7($1), '\\x00', $1) RETURNING run_id
    ), run AS (
      INSERT INTO ops.runs (run_id, provider, idempotency_key, payload, body_sha256, received_at, status, completed_at)
      SELECT run_id, 'stripe', $2, '{"id": 1}', '\\x00', $1, $3, $4 FROM key RETURNING run_id
    )
    INSERT INTO ops.run_events (run_id, type, at, data) SELECT run_id, 'received', $1, '{}' FROM run RETURNING run_id`,
  [at, fields.key, fields.status ?? 'completed', fields.completedAt === undefined ? at : fields.completedAt])
  return row.run_id
}

t.test('partitions are made ahead of the clock and an expired day is dropped whole', async t => {
  const { pool } = await database(t)
  const now = new Date('2030-01-10T12:00:00Z')
  const first = await pass(pool, now)
  t.equal(first.created, 12, 'today and three days ahead: runs, histories, audit rows')
  t.same(await tables(pool, '^runs_p2030'), ['runs_p20300110', 'runs_p20300111', 'runs_p20300112', 'runs_p20300113'])
  t.equal((await pass(pool, now)).created, 0, 'a second pass finds them made')
  // Made at boot (migration 011, today's days) or by a pass (012): attached, a check of the bounds
  // would only be compiled again by every insert (sql/012). The status check is the table's own.
  const { rows: checks } = await pool.query(`SELECT cl.relname, con.conname FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
    WHERE con.contype = 'c' AND cl.relispartition AND cl.relnamespace = 'ops'::regnamespace AND cl.relname ~ '_p[0-9]{8}$' ORDER BY 1, 2`)
  t.ok(checks.some(c => c.relname === 'runs_p20300110'), 'the status check stays')
  t.same(checks.filter(c => c.conname !== 'runs_status_check'), [], 'no partition keeps a check of its bounds')

  for (let i = 0; i < 20; i++) await runAt(pool, new Date(now.getTime() + i * 60_000), { key: `evt_${i}` })
  // RETENTION_DAYS=2: the 10th ends at 11th 00:00, expires at the 13th 00:00.
  const early = await pass(pool, new Date('2030-01-12T23:59:00Z'))
  t.notOk(early.dropped.includes('runs_p20300110'), 'not a minute early')
  t.equal((await pool.query("SELECT count(*)::int AS n FROM ops.runs WHERE received_at >= '2030-01-10'")).rows[0].n, 20)

  const due = await pass(pool, new Date('2030-01-13T00:01:00Z'))
  t.ok(due.dropped.includes('runs_p20300110') && due.dropped.includes('run_events_p20300110'), 'the day and its histories are dropped')
  t.equal(due.held, 0, 'nothing to keep: all completed')
  t.same(await tables(pool, '^runs_p2030'), ['runs_p20300111', 'runs_p20300112', 'runs_p20300113', 'runs_p20300114', 'runs_p20300115', 'runs_p20300116'])
  t.equal((await pool.query("SELECT count(*)::int AS n FROM ops.runs WHERE received_at >= '2030-01-10'")).rows[0].n, 0)
  t.equal((await pool.query("SELECT count(*)::int AS n FROM ops.run_events WHERE at >= '2030-01-10'")).rows[0].n, 0)
  t.equal((await pool.query('SELECT count(*)::int AS n FROM ops.run_keys')).rows[0].n, 20, 'their keys stay (DEDUP_DAYS)')
})

t.test('retention by status: what a human still needs survives the drop of its day', async t => {
  const { pool } = await database(t)
  const day = new Date('2030-01-10T08:00:00Z')
  await pass(pool, day)
  const dropAt = new Date('2030-01-13T01:00:00Z')
  const runs = {
    completed: await runAt(pool, day, { key: 'evt_completed' }),
    failedLongAgo: await runAt(pool, day, { key: 'evt_failed_long_ago', status: 'failed' }),
    failedRecently: await runAt(pool, day, { key: 'evt_failed_recently', status: 'failed', completedAt: new Date(dropAt.getTime() - 12 * 3_600_000) }),
    openException: await runAt(pool, day, { key: 'evt_open_exception', status: 'exception' }),
    closedLongAgo: await runAt(pool, day, { key: 'evt_closed_long_ago' }),
    waiting: await runAt(pool, day, { key: 'evt_waiting', status: 'retrying', completedAt: null })
  }
  await pool.query(`INSERT INTO ops.exceptions (run_id, reason, status, created_at, closed_at) VALUES
    ($1, 'conflict', 'open', $3, NULL), ($2, 'conflict', 'resolved', $3, $3)`, [runs.openException, runs.closedLongAgo, day])
  await pool.query("INSERT INTO ops.run_events (run_id, type, at, data) SELECT run_id, 'failed', $1, '{}' FROM ops.runs WHERE status = 'failed'", [day])

  const report = await pass(pool, dropAt)
  t.ok(report.dropped.includes('runs_p20300110'))
  t.equal(report.held, 3)
  const left = (await pool.query('SELECT run_id, tier FROM ops.runs')).rows
  t.same(left.map(r => r.run_id).sort(), [runs.failedRecently, runs.openException, runs.waiting].sort(), 'kept: failed less than RETENTION_REVIEW_DAYS ago, an open exception, a run still to process')
  t.ok(left.every(r => r.tier === 'held'), 'in the held tier')
  const history = (await pool.query('SELECT run_id, type, tier FROM ops.run_events ORDER BY run_id, id')).rows
  t.same(history.filter(e => e.run_id === runs.failedRecently).map(e => e.type), ['received', 'failed'], 'with their history')
  t.ok(history.every(e => e.tier === 'held'))
  t.same((await pool.query('SELECT run_id FROM ops.exceptions')).rows.map(r => r.run_id), [runs.openException], 'the exception closed long ago went with its run')

  // The open exception closes; a review period later the run leaves. The waiting run never does.
  await pool.query("UPDATE ops.exceptions SET status = 'resolved', closed_at = $1", [dropAt])
  await pool.query("UPDATE ops.runs SET status = 'completed' WHERE run_id = $1", [runs.openException])
  const later = await pass(pool, new Date(dropAt.getTime() + 2 * DAY))
  t.equal(later.released, 2, 'the failed run and the reviewed one')
  t.same((await pool.query('SELECT run_id FROM ops.runs')).rows.map(r => r.run_id), [runs.waiting])
  t.same((await pool.query('SELECT count(*)::int AS n FROM ops.exceptions')).rows[0].n, 0)
})

t.test('a pass that stopped half-way (a day detached, not dropped) is finished by the next', async t => {
  const { pool } = await database(t)
  const day = new Date('2030-01-10T08:00:00Z')
  await pass(pool, day)
  await runAt(pool, day, { key: 'evt_done' })
  const waiting = await runAt(pool, day, { key: 'evt_waiting', status: 'retrying', completedAt: null })
  await pool.query('ALTER TABLE ops.runs_live DETACH PARTITION ops.runs_p20300110')
  t.equal((await pool.query('SELECT count(*)::int AS n FROM ops.runs')).rows[0].n, 0, 'the day is out of ops.runs')

  const report = await pass(pool, new Date('2030-01-13T01:00:00Z'))
  t.ok(report.dropped.includes('runs_p20300110') && report.dropped.includes('run_events_p20300110'), 'both tables dropped')
  t.same(await tables(pool, '^(runs|run_events)_p20300110$'), [])
  t.same((await pool.query('SELECT run_id, tier FROM ops.runs')).rows, [{ run_id: waiting, tier: 'held' }], 'the run still to process was copied over from the detached table')
  t.same((await pool.query('SELECT type, tier FROM ops.run_events WHERE run_id = $1', [waiting])).rows, [{ type: 'received', tier: 'held' }], 'with its history')
})

t.test('a duplicate of a removed run is recognised inside DEDUP_DAYS and new after it', async t => {
  const { app, databaseUrl } = await build(t, { RETENTION_DAYS: '1', DEDUP_DAYS: '3' })
  const pool = quiet(new pg.Pool({ connectionString: databaseUrl, max: 2 }))
  t.teardown(async () => { await pool.end() })
  const settings = { ...SETTINGS, retentionDays: 1, dedupDays: 3, refusalsDays: 7 }
  const event = stripeEvent()
  const first = (await app.inject(stripeDelivery(event))).json()
  t.equal(first.status, 'accepted')
  // Processed (this app only receives: ROLE=ingest); a run still to process would be held, not dropped.
  await pool.query("UPDATE ops.runs SET status = 'completed', completed_at = now()")

  const start = Date.now()
  const removed = await pass(pool, new Date(start + 2.5 * DAY), settings)
  t.ok(removed.dropped.some(name => name.startsWith('runs_p')), 'the run\'s day was dropped')
  t.equal((await pool.query('SELECT count(*)::int AS n FROM ops.runs WHERE run_id = $1', [first.run_id])).rows[0].n, 0, 'the run is gone')
  const again = await app.inject(stripeDelivery(event))
  t.equal(again.statusCode, 200)
  t.same(again.json(), { status: 'duplicate', run_id: first.run_id }, 'inside the window: a duplicate of the removed run')
  const { rows: audit } = await pool.query('SELECT type, tier FROM ops.run_events WHERE run_id = $1', [first.run_id])
  t.same(audit, [{ type: 'duplicate', tier: 'audit' }], 'audited without a run')

  const pruned = await pass(pool, new Date(start + 3.5 * DAY), settings)
  t.equal(pruned.keysPruned, 1, 'past DEDUP_DAYS the key goes')
  const client = await pool.connect()
  await ensurePartitions(client, new Date()).finally(() => { client.release() })
  const late = await app.inject(stripeDelivery(event))
  t.equal(late.statusCode, 200)
  t.equal(late.json().status, 'accepted', 'after the window the same key is a new event')
  t.not(late.json().run_id, first.run_id)
})

t.test('replicas running retention at once: one does it, never twice', async t => {
  const { pool, databaseUrl } = await database(t)
  const now = new Date('2030-01-10T12:00:00Z')
  await pass(pool, now)
  for (let i = 0; i < 50; i++) await runAt(pool, now, { key: `evt_${i}` })
  const others = Array.from({ length: 3 }, () => quiet(new pg.Pool({ connectionString: databaseUrl, max: 2 })))
  t.teardown(async () => { await Promise.all(others.map(async p => await p.end())) })
  const reports = await Promise.all([pool, ...others].map(async p => await maintain(p, SETTINGS, { at: new Date('2030-01-14T00:00:00Z') })))
  const dropped = reports.flatMap(r => r.dropped)
  t.equal(dropped.filter(name => name === 'runs_p20300110').length, 1, 'the day dropped once')
  t.equal(new Set(dropped).size, dropped.length, 'no table dropped twice')

  // Replicas booting together make the partitions of a new day at once: each boot succeeds, once each table.
  const made = await Promise.all([pool, ...others].map(async p => {
    const client = await p.connect()
    try {
      return await ensurePartitions(client, new Date('2030-02-01T00:00:00Z'))
    } finally {
      client.release()
    }
  }))
  t.equal(made.reduce((a, b) => a + b, 0), 12, 'four days of three tables, made by whichever came first')

  // While another replica holds the lock, a pass does nothing.
  const holder = await pool.connect()
  t.teardown(() => holder.release())
  await holder.query('SELECT pg_advisory_lock($1)', [MAINTENANCE_LOCK])
  const skipped = await maintain(others[0], SETTINGS, { at: new Date('2030-01-20T00:00:00Z') })
  t.equal(skipped.skipped, true)
  t.same(await tables(pool, '^runs_p2030012'), [], 'nothing made while skipped')
  await holder.query('SELECT pg_advisory_unlock($1)', [MAINTENANCE_LOCK])
})

t.test("retention decides by the database's clock: a replica 40 days ahead skips, and drops nothing early", async t => {
  const { pool } = await database(t)
  const client = await pool.connect()
  await ensurePartitions(client).finally(() => { client.release() })
  const today = new Date()
  const runs = await Promise.all(Array.from({ length: 22 }, async (_, i) => await runAt(pool, new Date(today.getTime() - (i % 2) * 60_000), { key: `evt_skew_${i}` })))
  const before = await tables(pool, '^runs_p[0-9]{8}$')
  const ahead = () => Date.now() + 40 * DAY
  const skipped = await maintain(pool, SETTINGS, { replicaNow: ahead })
  t.same([skipped.skipped, skipped.clockSkewed], [true, true], 'a replica 40 days ahead skips the pass (651cd06: today and the days ahead dropped, 22 runs to 1)')
  t.ok(Math.abs(skipped.clockSkewMs - 40 * DAY) < 60_000, `and reports its skew (${Math.round(skipped.clockSkewMs / DAY)} days)`)
  t.same(await tables(pool, '^runs_p[0-9]{8}$'), before, 'no partition dropped')

  // With the bound lifted, the pass still decides by the database's clock, not the replica's.
  const lifted = await maintain(pool, SETTINGS, { replicaNow: ahead, maxSkewMs: 100 * DAY })
  t.equal(lifted.skipped, false)
  t.same(lifted.dropped.filter(name => /_p[0-9]{8}$/.test(name)), [], "no day is expired by the database's clock")
  t.equal(lifted.keysPruned, 0, 'no key forgotten')
  t.equal((await pool.query('SELECT count(*)::int AS n FROM ops.runs WHERE run_id = ANY($1::uuid[])', [runs])).rows[0].n, 22, 'every run kept')
  t.ok((await tables(pool, '^runs_p[0-9]{8}$')).includes(`runs_p${today.toISOString().slice(0, 10).replaceAll('-', '')}`), "today's partition is there")
  const behind = await maintain(pool, SETTINGS, { replicaNow: () => Date.now() - 2 * 60_000 })
  t.equal(behind.skipped, true, 'two minutes behind (past the default 60 s) skips too')
})

t.test('refusal audit rows are dropped after RETENTION_REFUSALS_DAYS', async t => {
  const { pool } = await database(t)
  const day = new Date('2030-01-10T08:00:00Z')
  await pass(pool, day)
  await pool.query("INSERT INTO ops.run_events (run_id, type, at, data, tier) VALUES (NULL, 'rejected', $1, '{}', 'audit')", [day])
  t.notOk((await pass(pool, new Date('2030-01-11T23:00:00Z'))).dropped.includes('run_events_audit_p20300110'))
  t.ok((await pass(pool, new Date('2030-01-12T00:00:00Z'))).dropped.includes('run_events_audit_p20300110'))
  t.equal((await pool.query('SELECT count(*)::int AS n FROM ops.run_events')).rows[0].n, 0)
})

t.test('an install of the old layout moves over with every row, and its table expires whole', async t => {
  const { pool, databaseUrl } = await database(t, '007')
  // The layout of migrations 001–007, holding runs (some with the random ids of before 006), their
  // histories, exceptions and refusals.
  await pool.query(`INSERT INTO ops.runs (run_id, provider, idempotency_key, payload, body_sha256, status, completed_at, received_at)
    SELECT CASE WHEN g % 2 = 0 THEN gen_random_uuid() ELSE ops.uuid_v7() END, 'stripe', 'evt_old_' || g, jsonb_build_object('n', g), sha256(g::text::bytea),
      CASE WHEN g % 100 = 0 THEN 'failed' ELSE 'completed' END, now(), now() - make_interval(mins => g)
    FROM generate_series(1, 1000) g`)
  await pool.query('INSERT INTO ops.run_events (run_id, type, data) SELECT run_id, t, \'{}\' FROM ops.runs, unnest(ARRAY[\'received\', \'completed\']) t')
  await pool.query("INSERT INTO ops.run_events (run_id, type, data) VALUES (NULL, 'rejected', '{}')")
  await pool.query("INSERT INTO ops.exceptions (run_id, reason) SELECT run_id, 'conflict' FROM ops.runs WHERE status = 'failed'")
  const before = (await pool.query(`SELECT (SELECT count(*) FROM ops.runs)::int AS runs, (SELECT count(*) FROM ops.run_events)::int AS events,
    (SELECT count(*) FROM ops.exceptions)::int AS exceptions, (SELECT max(id) FROM ops.run_events)::int AS last_event`)).rows[0]

  const latest = Math.max(...readdirSync(MIGRATIONS_DIR).map(file => Number(/^(\d+)\.do\./.exec(file)?.[1] ?? 0)))
  t.same(await migrate(databaseUrl), { from: 7, to: latest }, 'from the old layout through the partitions (011) to the latest')
  const after = (await pool.query(`SELECT (SELECT count(*) FROM ops.runs)::int AS runs, (SELECT count(*) FROM ops.run_events)::int AS events,
    (SELECT count(*) FROM ops.exceptions)::int AS exceptions, (SELECT count(*) FROM ops.run_keys)::int AS keys,
    (SELECT count(*) FROM ops.runs WHERE tier = 'legacy')::int AS legacy`)).rows[0]
  t.same(after, { runs: before.runs, events: before.events, exceptions: before.exceptions, keys: before.runs, legacy: before.runs }, 'every row, a key per run')

  const { app } = await build(t, { DATABASE_URL: databaseUrl })
  const duplicate = await app.inject(stripeDelivery(stripeEvent({ id: 'evt_old_7' })))
  t.equal(duplicate.json().status, 'conflict', 'an old key is known (other bytes under it: a conflict)')
  const fresh = (await app.inject(stripeDelivery(stripeEvent()))).json()
  t.equal(fresh.status, 'accepted')
  const { rows: [newest] } = await pool.query('SELECT tier, (SELECT min(id) FROM ops.run_events WHERE run_id = $1)::int AS event_id FROM ops.runs WHERE run_id = $1', [fresh.run_id])
  t.equal(newest.tier, 'live', 'new runs go to the day partitions')
  t.ok(newest.event_id > before.last_event, 'event ids go on from the old table\'s')

  const expired = await pass(pool, new Date(Date.now() + 40 * DAY), { ...SETTINGS, retentionDays: 30, reviewDays: 30, dedupDays: 30 })
  t.ok(expired.dropped.includes('runs_legacy') && expired.dropped.includes('run_events_legacy'), 'the old table is dropped whole once all of it expired')
  t.equal(expired.held, 12, 'after the runs with an open exception moved out (ten failed, one conflict), and the new one never processed (ROLE=ingest)')
  t.equal((await pool.query("SELECT count(*)::int AS n FROM ops.run_events WHERE tier = 'held'")).rows[0].n, 11 * 2 + 1 + 1, 'with their histories')
})

t.test('DEDUP_DAYS is at least RETENTION_DAYS', async t => {
  t.throws(() => loadConfig({ RETENTION_DAYS: '30', DEDUP_DAYS: '7' }), /DEDUP_DAYS \(7\) must be at least RETENTION_DAYS \(30\)/)
  t.match(loadConfig({}).retention, { retentionDays: 30, reviewDays: 30, refusalsDays: 7, dedupDays: 30 })
})
