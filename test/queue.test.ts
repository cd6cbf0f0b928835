import t from 'tap'
import pg from 'pg'
import { CLAIM, FINISH, claimRuns, finishRuns, renewLeases } from '../src/queue.js'
import { migrate } from '../src/db/migrate.js'
import { INGEST } from '../src/plugins/ingest.js'
import { freshDatabase } from './helper.js'

// The queue's statements on their own: claims by two index scans, outcomes recorded in
// batches, one heartbeat for every lease, each fenced on the lease.

async function queue (t: Parameters<typeof freshDatabase>[0]) {
  const databaseUrl = await freshDatabase(t)
  await migrate(databaseUrl)
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 })
  // The database is dropped WITH (FORCE) when the test ends: an idle connection it cuts is no failure.
  pool.on('error', () => {})
  t.teardown(async () => { await pool.end() })
  const add = async (n: number) => await pool.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256)
    SELECT 'stripe', 'evt_' || g, '{}'::jsonb, '\\x00' FROM generate_series(1, $1::int) g`, [n])
  return { pool, add }
}

t.test('a batch of outcomes is fenced run by run: a run another worker took is left alone', async t => {
  const { pool, add } = await queue(t)
  await add(3)
  const mine = await claimRuns(pool, 'worker-a', 3, 60_000, 8)
  t.equal(mine.length, 3)
  // worker-a's lease on the first run expires and worker-b takes it.
  await pool.query("UPDATE ops.runs SET locked_until = now() - interval '1 second' WHERE run_id = $1", [mine[0].run_id])
  const taken = await claimRuns(pool, 'worker-b', 10, 60_000, 8)
  t.same(taken.map(r => [r.run_id, r.lease_expired]), [[mine[0].run_id, true]], 'b claims only the expired run')

  const recorded = await finishRuns(pool, 'worker-a', mine.map((run, i) => ({
    runId: run.run_id, status: i === 2 ? 'exception' : 'completed', data: { attempt: run.attempts }, ...(i === 2 ? { error: 'sor_conflict', exception: { reason: 'sor_conflict', details: { amount: 1 } } } : {})
  })))
  t.same(recorded, [false, true, true], 'the stolen run is not finished by a')
  const { rows } = await pool.query('SELECT run_id, status, locked_by FROM ops.runs ORDER BY idempotency_key')
  t.same(rows.map(r => [r.status, r.locked_by]), [['processing', 'worker-b'], ['completed', null], ['exception', null]])
  const { rows: [exception] } = await pool.query('SELECT reason, details FROM ops.exceptions')
  t.same(exception, { reason: 'sor_conflict', details: { amount: 1 } }, 'the exception raised in the same statement')
  t.same(await finishRuns(pool, 'worker-b', [{ runId: mine[0].run_id, status: 'completed', data: {} }]), [true])
  const { rows: events } = await pool.query("SELECT run_id, count(*)::int AS n FROM ops.run_events WHERE type IN ('completed', 'exception') GROUP BY run_id")
  t.ok(events.every(e => e.n === 1) && events.length === 3, 'each run finished exactly once')
})

t.test('one heartbeat renews the leases a worker holds, and only those', async t => {
  const { pool, add } = await queue(t)
  await add(4)
  const a = await claimRuns(pool, 'worker-a', 2, 1_000, 8)
  const b = await claimRuns(pool, 'worker-b', 2, 1_000, 8)
  await renewLeases(pool, [...a, ...b].map(r => r.run_id), 'worker-a', 600_000)
  const { rows } = await pool.query("SELECT locked_by, locked_until > now() + interval '1 minute' AS renewed FROM ops.runs ORDER BY locked_by")
  t.same(rows.map(r => [r.locked_by, r.renewed]), [['worker-a', true], ['worker-a', true], ['worker-b', false], ['worker-b', false]])
})

t.test('the heartbeat never waits for a run being finished (no deadlock with the finish statement)', async t => {
  const { pool, add } = await queue(t)
  await add(3)
  const held = await claimRuns(pool, 'worker-a', 3, 1_000, 8)
  // Another transaction holds one of the rows, as the finish statement does while it records outcomes.
  const other = await pool.connect()
  t.teardown(() => { other.release() })
  await other.query('BEGIN')
  await other.query('SELECT 1 FROM ops.runs WHERE run_id = $1 FOR UPDATE', [held[0].run_id])
  const renewed = await Promise.race([
    renewLeases(pool, held.map(r => r.run_id), 'worker-a', 600_000).then(() => true),
    new Promise<false>(resolve => setTimeout(() => { resolve(false) }, 2_000))
  ])
  await other.query('ROLLBACK')
  t.equal(renewed, true, 'the heartbeat ended without waiting for the locked row')
  const { rows } = await pool.query("SELECT run_id, locked_until > now() + interval '1 minute' AS renewed FROM ops.runs WHERE locked_by = 'worker-a'")
  t.same(rows.filter(r => r.renewed).map(r => r.run_id).sort(), held.slice(1).map(r => r.run_id).sort(), 'the other leases renewed, the locked one left to its finish')
})

t.test('claims: due runs in order, limited, expired leases first, never past WORKER_MAX_ATTEMPTS', async t => {
  const { pool, add } = await queue(t)
  await add(50)
  await pool.query("UPDATE ops.runs SET next_attempt_at = now() + interval '1 hour' WHERE idempotency_key IN ('evt_1', 'evt_2')")
  const first = await claimRuns(pool, 'w', 10, 60_000, 8)
  t.equal(first.length, 10, 'no more than the limit')
  t.notOk(first.some(r => ['evt_1', 'evt_2'].includes((r.payload as { id?: string }).id ?? '')), 'not before next_attempt_at')
  await pool.query("UPDATE ops.runs SET locked_until = now() - interval '1 second' WHERE run_id = $1", [first[3].run_id])
  await pool.query("UPDATE ops.runs SET locked_until = now() - interval '1 second', attempts = 8 WHERE run_id = $1", [first[4].run_id])
  const [expired, ...none] = await claimRuns(pool, 'w2', 1, 60_000, 8)
  t.same([expired.run_id, expired.lease_expired, none.length], [first[3].run_id, true, 0], 'with one free slot, the expired lease comes first')
  const next = await claimRuns(pool, 'w2', 4, 60_000, 8)
  t.equal(next.length, 4)
  t.notOk([expired, ...next].some(r => r.run_id === first[4].run_id), 'a run out of attempts is not taken again')
  const { rows: [{ open }] } = await pool.query("SELECT count(*)::int AS open FROM ops.runs WHERE status = 'received'")
  t.equal(open, 50 - 10 - 4, 'the rest wait')
})

t.test('a claim reads the runs it takes, never the whole table, with the plan PostgreSQL caches for it', async t => {
  const { pool, add } = await queue(t)
  // A backlog analysed as such (autovacuum does it after an outage): most of the table is due.
  await add(20_000)
  await pool.query('ANALYZE ops.runs')
  const client = await pool.connect()
  t.teardown(() => { client.release() })
  // The plan a long-lived connection ends up with: generic, for any limit.
  await client.query('SET plan_cache_mode = force_generic_plan')
  await client.query(`PREPARE claim (int, text, float8, int) AS ${CLAIM}`)
  await client.query('BEGIN')
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim (128, 'w', 60000, 8)")
  await client.query('ROLLBACK')
  const scans: string[] = []
  const walk = (node: { 'Node Type': string, 'Relation Name'?: string, 'Actual Rows': number, Plans?: unknown[] }): void => {
    if (node['Relation Name'] === 'runs') scans.push(`${node['Node Type']} (${node['Actual Rows']} rows)`)
    for (const child of node.Plans ?? []) walk(child as typeof node)
  }
  walk(plan.Plan)
  t.notOk(scans.some(scan => scan.startsWith('Seq Scan')), `no sequential scan of ops.runs: ${scans.join(', ')}`)
})

t.test('a batch of outcomes finds its runs by key, whatever the partial indexes of open runs hold', async t => {
  const { pool, add } = await queue(t)
  // 5,000 runs claimed and finished, vacuumed and analysed (the partial indexes look empty to the
  // planner), then 5,000 more claimed and finished since (their dead entries are still in those
  // indexes), and 24 runs this worker holds.
  await add(5_000)
  await claimRuns(pool, 'w', 5_000, 60_000, 8)
  await pool.query("UPDATE ops.runs SET status = 'completed', locked_by = NULL, locked_until = NULL")
  await pool.query('VACUUM ANALYZE ops.runs')
  await pool.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256)
    SELECT 'stripe', 'evt_more_' || g, '{}'::jsonb, '\\x00' FROM generate_series(1, 5024) g`)
  await claimRuns(pool, 'w', 5_000, 60_000, 8)
  await pool.query("UPDATE ops.runs SET status = 'completed', locked_by = NULL, locked_until = NULL WHERE status = 'processing'")
  const held = await claimRuns(pool, 'w', 24, 60_000, 8)
  t.equal(held.length, 24)
  const client = await pool.connect()
  t.teardown(() => { client.release() })
  // The plan a long-lived connection ends up with: generic.
  await client.query('SET plan_cache_mode = force_generic_plan')
  await client.query(`PREPARE finish (text, jsonb, uuid[]) AS ${FINISH}`)
  const items = JSON.stringify(held.map(run => ({ run_id: run.run_id, status: 'completed', retry_in_ms: null, error: null, data: {}, exception: null })))
  const ids = `{${held.map(run => run.run_id).join(',')}}`
  await client.query('BEGIN')
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE finish ('w', ${client.escapeLiteral(items)}, ${client.escapeLiteral(ids)})`)
  await client.query('ROLLBACK')
  // ops.runs is partitioned (sql/011): the runs are read from their day's partition by its primary
  // key; the other partitions hold none of them (an empty table's scan reads nothing).
  const scans: string[] = []
  type Node = { 'Node Type': string, 'Relation Name'?: string, 'Index Name'?: string, 'Actual Rows'?: number, 'Rows Removed by Filter'?: number, Plans?: unknown[] }
  const walk = (node: Node): void => {
    const read = (node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0) > 0
    if (node['Relation Name']?.startsWith('runs') === true && node['Node Type'] !== 'ModifyTable' && (read || node['Index Name'] !== undefined)) {
      scans.push(`${node['Node Type']} ${node['Index Name'] ?? node['Relation Name']}`)
    }
    for (const child of node.Plans ?? []) walk(child as Node)
  }
  walk(plan.Plan)
  t.ok(scans.length > 0 && scans.every(scan => scan.endsWith('_pkey')), `ops.runs read by its primary key only: ${scans.join(', ')}`)
  t.equal(plan.Plan['Actual Rows'], 24, 'every run finished')
})

t.test('the ingest statement opens no day of ops.runs: its cost does not grow with the days kept', async t => {
  const { pool } = await queue(t)
  // RETENTION_DAYS=30: a month of day partitions.
  await pool.query('SELECT ops.ensure_day_partitions(current_date - 30, current_date)')
  const client = await pool.connect()
  t.teardown(() => { client.release() })
  // As ingest's own connections run it (src/plugins/ingest.ts): one generic plan.
  await client.query('SET plan_cache_mode = force_generic_plan')
  await client.query(`PREPARE ingest (jsonb, float8) AS ${INGEST}`)
  const item = (key: string, sha: string, first = true) => `["stripe","${key}","t",{"id":"${key}"},"${sha}",{},{},"received",null,null,true,${first}]`
  await client.query(`EXECUTE ingest ('[${item('evt_1', '01')}]', 30000)`)
  await client.query('BEGIN')
  // A new key, a duplicate and a payload conflict: the stored run's tier is looked up for the last two.
  const { rows: [{ 'QUERY PLAN': [plan] }] } = await client.query(
    `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ingest ('[${item('evt_2', '02')},${item('evt_1', '01')},${item('evt_1', '03', false)}]', 30000)`)
  const { rows: events } = await client.query("SELECT type, tier FROM ops.run_events WHERE type <> 'received' ORDER BY id")
  await client.query('ROLLBACK')
  const opened: string[] = []
  type Node = { 'Relation Name'?: string, Plans?: unknown[] }
  const walk = (node: Node): void => {
    if (/^runs_/.test(node['Relation Name'] ?? '')) opened.push(node['Relation Name'] as string)
    for (const child of node.Plans ?? []) walk(child as Node)
  }
  walk(plan.Plan)
  t.same(opened, [], 'no partition of ops.runs in the cached plan')
  t.equal(plan.Plan['Actual Rows'], 3, 'every delivery answered')
  t.same(events, [{ type: 'duplicate', tier: 'live' }, { type: 'payload_conflict', tier: 'live' }], 'in the tier of their run')
})
