import t from 'tap'
import { migrate } from '../src/db/migrate.js'
import { freshDatabase, withClient } from './helper.js'

t.test('replicas booting together apply each migration once (advisory lock)', async t => {
  const databaseUrl = await freshDatabase(t)
  const results = await Promise.all(Array.from({ length: 6 }, async () => await migrate(databaseUrl)))
  const applied = results.filter(r => r.from === 0)
  t.equal(applied.length, 1, 'one replica migrated')
  t.ok(results.every(r => r.to === results[0].to && r.to >= 1), 'all end at the latest version')
  const tables = await withClient(databaseUrl, async client =>
    (await client.query("SELECT relname FROM pg_class WHERE relnamespace = 'ops'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY 1")).rows.map(r => r.relname))
  t.same(tables, ['exceptions', 'run_events', 'run_keys', 'runs', 'schema_version'])
  t.same(await migrate(databaseUrl), { from: results[0].to, to: results[0].to }, 'a second boot finds nothing to do')
})

t.test('run ids are ordered by time: UUID version 7 with the creation millisecond (migration 006)', async t => {
  const databaseUrl = await freshDatabase(t)
  await migrate(databaseUrl)
  const ids: string[] = []
  await withClient(databaseUrl, async client => {
    for (let i = 0; i < 3; i++) {
      const before = Date.now()
      const { rows: [row] } = await client.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256)
        VALUES ('stripe', $1, '{}', '\\x00') RETURNING run_id`, [`evt_${i}`])
      const ms = parseInt(row.run_id.replaceAll('-', '').slice(0, 12), 16)
      t.ok(ms >= before - 5 && ms <= Date.now() + 5, `the first 48 bits are the creation time in ms (${ms - before} ms)`)
      t.match(row.run_id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'version 7, RFC 9562 variant')
      ids.push(row.run_id)
      await new Promise(resolve => setTimeout(resolve, 3))
    }
  })
  t.same([...ids].sort(), ids, 'later runs sort after earlier ones')
  t.equal(new Set(ids).size, 3)
})

t.test('migration 013: conflicts of before in the new form, several open ones of a run folded into one', async t => {
  const databaseUrl = await freshDatabase(t)
  await migrate(databaseUrl, '012')
  await withClient(databaseUrl, async client => {
    const { rows: [run] } = await client.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256)
      VALUES ('stripe', 'evt_old', '{"a": 1}', '\\x00') RETURNING run_id`)
    for (const [n, status] of [[2, 'open'], [3, 'open'], [4, 'resolved']] as const) {
      await client.query(`INSERT INTO ops.exceptions (run_id, reason, details, status, created_at)
        VALUES ($1, 'payload_conflict', jsonb_build_object('body_sha256', $2::text, 'payload', jsonb_build_object('a', $3::int), 'delivery', '{}'::jsonb), $4, now() + make_interval(secs => $3))`,
      [run.run_id, String(n).repeat(64), n, status])
    }
    await migrate(databaseUrl)
    const { rows } = await client.query('SELECT status, closed_by, details FROM ops.exceptions ORDER BY created_at')
    t.same(rows.map(r => r.status), ['open', 'dismissed', 'resolved'], 'the oldest open one stays open, the other is folded into it')
    t.equal(rows[0].details.deliveries, 2, 'counting both')
    t.same(rows[0].details.copies, [{ body_sha256: '2'.repeat(64), payload: { a: 2 }, delivery: {}, deliveries: 1, excerpt: '{"a": 2}' }], 'its copy in the new form')
    t.equal(rows[1].closed_by, 'hookgate:migration-013')
    const second = await client.query('INSERT INTO ops.exceptions (run_id, reason) VALUES ($1, \'payload_conflict\')', [run.run_id]).then(() => 'inserted', (err: Error) => err.message)
    t.match(second, /exceptions_one_open_conflict_idx/, 'a second open conflict of the run is refused')
  })
})
