import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { build } from './helper.js'

// deploy/: the Prometheus alert rules and the Grafana dashboard name only metrics the gateway
// exposes, so that renaming a metric cannot silently leave an alert that never fires.
// (The rules themselves are checked by promtool in CI: `promtool test rules deploy/alerts.test.yml`.)

const root = join(import.meta.dirname, '..')

t.test('every metric named in deploy/ is one that GET /metrics exposes', async t => {
  const { app } = await build(t)
  const exposition = (await app.inject({ method: 'GET', url: '/metrics' })).body
  const exposed = new Set([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, name, type]) =>
    type === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name]))
  for (const file of ['deploy/alerts.yml', 'deploy/alerts.test.yml', 'deploy/grafana-dashboard.json']) {
    const named = new Set(readFileSync(join(root, file), 'utf8').match(/\bhookgate_[a-z0-9_]+/g) ?? [])
    t.ok(named.size > 0, `${file} names metrics`)
    for (const name of named) t.ok(exposed.has(name), `${file}: ${name} is exposed`)
  }
})
