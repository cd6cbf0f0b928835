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
    (await client.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'ops' ORDER BY 1")).rows.map(r => r.table_name))
  t.same(tables, ['exceptions', 'run_events', 'runs', 'schema_version'])
  t.same(await migrate(databaseUrl), { from: results[0].to, to: results[0].to }, 'a second boot finds nothing to do')
})
