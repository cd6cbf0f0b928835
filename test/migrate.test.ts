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
