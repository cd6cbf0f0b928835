// npm run bench:growth: what ingest, a claim and the admin's list of runs cost as ops.runs grows.
// For each size (BENCH_GROWTH_SIZES, default 10000,1000000,10000000) a fresh database is filled in
// bulk (generate_series, the 1.4 KB Stripe payload of npm run bench, a `received` event per run,
// 98 % completed, 1 % failed, 1 % exception, received over the last days), then measured with fsync
// on: ingest at saturation (a gateway, autocannon, unique events), one claim of 128 due runs out of
// 1,000 waiting, and the admin list query (first page, by provider; the failed ones). Writes
// docs/benchmarks-growth.md. Not a test: quote the ratios to the smallest size.
import { spawn } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { template } from './stripe-event.mjs'
import pg from 'pg'
import { startEmbeddedPostgres } from '../dist/db/embedded.js'
import { migrate } from '../dist/db/migrate.js'
import { CLAIM } from '../dist/queue.js'
import { freePort, query, waitFor } from '../test/lib/processes.mjs'
import { fill } from './fill.mjs'

const root = join(import.meta.dirname, '..')
const SIZES = (process.env.BENCH_GROWTH_SIZES ?? '10000,1000000,10000000').split(',').map(Number)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8)
const SECRET = 'whsec_bench_secret_0123456789abcdef'
/** Mean milliseconds of `text` over `times` executions on one connection (after one warm-up). */
async function timed (client, text, values, times = 20) {
  await client.query(text, values)
  const started = performance.now()
  for (let i = 0; i < times; i++) await client.query(text, values)
  return (performance.now() - started) / times
}

async function measure (database, n) {
  const dbName = `growth_${n}`
  await query(database.connectionString, `CREATE DATABASE ${dbName}`)
  const databaseUrl = database.connectionString.replace(/\/postgres$/, `/${dbName}`)
  await migrate(databaseUrl)
  // Bulk load without fsync (the measurements below run with it).
  await query(database.connectionString, 'ALTER SYSTEM SET fsync = off')
  await query(database.connectionString, 'SELECT pg_reload_conf()')
  const loadStarted = performance.now()
  const size = await fill(databaseUrl, n)
  const loadSeconds = (performance.now() - loadStarted) / 1000
  await query(database.connectionString, 'CHECKPOINT')
  await query(database.connectionString, 'ALTER SYSTEM RESET fsync')
  await query(database.connectionString, 'SELECT pg_reload_conf()')

  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  // The admin API's list (src/admin/repository.ts): first page, newest first; one provider's failed runs.
  const LIST = `SELECT run_id, provider, idempotency_key, event_type, status, attempts, received_at, started_at, completed_at, next_attempt_at, last_error
    FROM ops.runs WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR status = $2) ORDER BY received_at DESC, run_id DESC LIMIT 50`
  const listMs = await timed(client, LIST, [null, null])
  const failedMs = await timed(client, LIST, ['stripe', 'failed'])
  // A claim of 128 runs out of 1,000 due, rolled back each time (the plan a worker's connection caches).
  await client.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256)
    SELECT 'stripe', 'evt_due_' || i, $1::jsonb, sha256(int8send(i)) FROM generate_series(1, 1000) AS i`, [JSON.stringify(template)])
  await client.query('ANALYZE ops.runs')
  await client.query('SET plan_cache_mode = force_generic_plan')
  await client.query(`PREPARE claim (int, text, float8, int) AS ${CLAIM}`)
  let claimMs = 0
  for (let i = 0; i < 21; i++) {
    await client.query('BEGIN')
    const started = performance.now()
    await client.query("EXECUTE claim (128, 'growth', 60000, 8)")
    if (i > 0) claimMs += performance.now() - started
    await client.query('ROLLBACK')
  }
  claimMs /= 20
  await client.end()

  // Ingest at saturation: a gateway on this database, unique Stripe events.
  const port = await freePort()
  const gateway = spawn(process.execPath, [join(root, 'dist', 'server.js')], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL: databaseUrl, STRIPE_WEBHOOK_SECRET: SECRET, ROLE: 'ingest', DATA_DIR: work },
    stdio: 'ignore'
  })
  try {
    await waitFor(`http://127.0.0.1:${port}/readyz`)
    const run = async seconds => {
      const requests = Array.from({ length: Math.ceil(15_000 * seconds) }, () => {
        const body = Buffer.from(JSON.stringify({ ...template, id: `evt_${randomBytes(12).toString('hex')}` }))
        const t = Math.floor(Date.now() / 1000)
        const v1 = createHmac('sha256', SECRET).update(`${t}.`).update(body).digest('hex')
        return { method: 'POST', path: '/webhooks/stripe', body, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${v1}` } }
      })
      let next = 0
      return await autocannon({ url: `http://127.0.0.1:${port}`, connections: 50, duration: seconds, requests: [{ setupRequest: request => ({ ...request, ...requests[next++ % requests.length] }) }] })
    }
    await run(2)
    const result = await run(SECONDS)
    return { n, size, loadSeconds, listMs, failedMs, claimMs, rps: Math.round(result.requests.average), p99: result.latency.p99, non2xx: result.non2xx + result.errors }
  } finally {
    gateway.kill('SIGTERM')
    await new Promise(resolve => gateway.once('exit', resolve))
    await query(database.connectionString, `DROP DATABASE ${dbName} WITH (FORCE)`)
  }
}

const work = await mkdtemp(join(tmpdir(), 'hookgate-growth-'))
const quiet = { info () {}, debug () {}, warn () {} }
const database = await startEmbeddedPostgres(join(work, 'pg'), quiet, ['-c', 'max_wal_size=8GB', '-c', 'shared_buffers=1GB'], work)
const results = []
try {
  for (const n of SIZES) {
    const result = await measure(database, n)
    console.log(result)
    results.push(result)
  }
} finally {
  await database.stop()
  await rm(work, { recursive: true, force: true })
}

const base = results[0]
const ratio = (value, of) => (value / of).toFixed(2)
const rows = results.map(r => `| ${r.n.toLocaleString('en')} | ${r.size.runs} / ${r.size.events} / ${r.size.keys} | ${r.rps} (${ratio(r.rps, base.rps)}×) | ${r.p99} (${ratio(r.p99, base.p99)}×) | ${r.claimMs.toFixed(2)} (${ratio(r.claimMs, base.claimMs)}×) | ${r.listMs.toFixed(2)} (${ratio(r.listMs, base.listMs)}×) | ${r.failedMs.toFixed(2)} (${ratio(r.failedMs, base.failedMs)}×) | ${r.non2xx} |`).join('\n')
const date = new Date().toISOString().slice(0, 16).replace('T', ' ')
await writeFile(join(root, 'docs', 'benchmarks-growth.md'), `# Growth curve

\`npm run bench:growth\` (bench/growth.mjs): for each size, a fresh database filled in bulk (generate_series:
the 1.4 KB Stripe payload of \`npm run bench\`, one \`received\` event per run, 98 % completed, 1 % failed,
1 % exception with its exception row, received over the last n/20 s: each run in the partition of its
day, with its key in ops.run_keys; the partitions of the last 30 days made for every size, as the default
retention keeps them), vacuumed, then measured with fsync on: ingest at saturation
(a gateway, ${SECONDS} s of unique events, 50 connections, autocannon), one claim of 128 due runs out of
1,000 waiting (the generic plan a worker's connection caches; mean of 20, rolled back), and the admin
API's list of runs (first page of 50, newest first; one provider's failed runs; mean of 20).
In brackets: the ratio to the smallest size. Embedded PostgreSQL (shared_buffers 1 GB), same machine
as the load generator.

Last run: ${date} UTC, ${process.version}, sizes ${SIZES.join(', ')}.

| runs in ops.runs | size: runs / run_events / run_keys | ingest req/s | ingest p99 ms | claim ms | admin list ms | failed runs of a provider ms | non-2xx |
|---|---|---|---|---|---|---|---|
${rows}

Reproduce: \`npm ci && npm run bench:growth\` (\`BENCH_GROWTH_SIZES=10000,1000000\` for fewer sizes).
`)
