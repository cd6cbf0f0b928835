// npm run bench:lifecycle: what the data lifecycle costs the deliveries around it.
// 1. Migration of a populated install: a database at migration 007 (the layout before partitions)
//    holding BENCH_LIFECYCLE_RUNS runs (default 1,000,000: the 1.4 KB Stripe payload, two events per
//    run) is migrated one step at a time (008–011) while a probe inserts a run every 5 ms, as a
//    replica of the old release would: the longest wait of the probe is how long ingest was blocked.
// 2. A retention pass dropping a day of BENCH_LIFECYCLE_RUNS runs (1 % failed, 1 % with an open
//    exception: those are held) while a gateway takes a paced 1,000 deliveries/s: p99 with the drop
//    against p99 without it, measured just before and just after.
// Writes docs/benchmarks-lifecycle.md. Not a test: quote the ratios.
import { spawn } from 'node:child_process'
import { createHmac, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import pg from 'pg'
import { template } from './stripe-event.mjs'
import { startEmbeddedPostgres } from '../dist/db/embedded.js'
import { migrate } from '../dist/db/migrate.js'
import { maintain } from '../dist/retention.js'
import { freePort, query, waitFor } from '../test/lib/processes.mjs'

const root = join(import.meta.dirname, '..')
const RUNS = Number(process.env.BENCH_LIFECYCLE_RUNS ?? 1_000_000)
const SECRET = 'whsec_bench_secret_0123456789abcdef'
const CHUNK = 250_000
const DAY = 86_400_000
const HEADERS = { 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)', 'content-type': 'application/json; charset=utf-8', host: 'hooks.example.com' }

const work = await mkdtemp(join(tmpdir(), 'hookgate-lifecycle-'))
const quiet = { info () {}, debug () {}, warn () {} }
const database = await startEmbeddedPostgres(join(work, 'pg'), quiet, ['-c', 'max_wal_size=8GB', '-c', 'shared_buffers=1GB'], work)
const server = database.connectionString
const databaseUrl = server.replace(/\/postgres$/, '/lifecycle')
const setFsync = async on => {
  await query(server, on ? 'ALTER SYSTEM RESET fsync' : 'ALTER SYSTEM SET fsync = off')
  await query(server, 'SELECT pg_reload_conf()')
}
const counts = async () => (await query(databaseUrl, `SELECT (SELECT count(*) FROM ops.runs)::int AS runs,
  (SELECT count(*) FROM ops.run_events)::int AS events, (SELECT count(*) FROM ops.exceptions)::int AS exceptions`)).rows[0]

/** Inserts one run every 5 ms until stopped; every wait, with when it began. */
function probe () {
  const waits = []
  let stopping = false
  const client = new pg.Client({ connectionString: databaseUrl })
  const done = (async () => {
    await client.connect()
    // eslint-disable-next-line no-unmodified-loop-condition -- set by stop(), between two inserts
    for (let i = 0; !stopping; i++) {
      const started = performance.now()
      await client.query(`INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256, status)
        VALUES ('probe', $1, '{}', '\\x00', 'completed') ON CONFLICT DO NOTHING`, [`probe_${i}`])
      waits.push({ at: started, ms: performance.now() - started })
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    await client.end()
  })()
  return { waits, stop: async () => { stopping = true; await done } }
}

const results = {}
try {
  // --- 1. the migration of a populated install ------------------------------------------------------
  await query(server, 'CREATE DATABASE lifecycle')
  await migrate(databaseUrl, '007')
  await setFsync(false)
  let started = performance.now()
  for (let from = 1; from <= RUNS; from += CHUNK) {
    await query(databaseUrl, `
      WITH ins AS (
        INSERT INTO ops.runs (provider, idempotency_key, event_type, status, payload, body_sha256, headers, received_at, started_at, completed_at, attempts)
        SELECT 'stripe', 'evt_old_' || i, 'payment_intent.succeeded', CASE i % 100 WHEN 0 THEN 'failed' ELSE 'completed' END,
          jsonb_set($1::jsonb, '{id}', to_jsonb('evt_old_' || i)), sha256(int8send(i)), $2::jsonb,
          now() - make_interval(secs => ($4::bigint - i) * 0.05), now(), now(), 1
        FROM generate_series($3::bigint, least($3::bigint + ${CHUNK - 1}, $4::bigint)) AS i
        RETURNING run_id, received_at
      )
      INSERT INTO ops.run_events (run_id, type, at, data)
      SELECT run_id, t, received_at, '{"request_id": "req-1", "body_bytes": 1412}'::jsonb FROM ins, unnest(ARRAY['received', 'completed']) AS t`,
    [JSON.stringify(template), JSON.stringify(HEADERS), from, RUNS])
  }
  await query(databaseUrl, "INSERT INTO ops.exceptions (run_id, reason) SELECT run_id, 'amount_mismatch' FROM ops.runs WHERE status = 'failed'")
  await query(databaseUrl, 'VACUUM ANALYZE')
  await query(server, 'CHECKPOINT')
  await setFsync(true)
  const fillSeconds = (performance.now() - started) / 1000
  const before = await counts()
  const sizes = (await query(databaseUrl, "SELECT pg_size_pretty(pg_total_relation_size('ops.runs')) AS runs, pg_size_pretty(pg_total_relation_size('ops.run_events')) AS events")).rows[0]

  const probing = probe()
  await new Promise(resolve => setTimeout(resolve, 2000))
  const steps = []
  for (const version of ['008', '009', '010', '011']) {
    started = performance.now()
    await migrate(databaseUrl, version)
    steps.push({ version, from: started, ms: performance.now() - started })
  }
  await new Promise(resolve => setTimeout(resolve, 2000))
  await probing.stop()
  const after = await counts()
  const probeBefore = probing.waits.filter(w => w.at < steps[0].from).map(w => w.ms).sort((a, b) => a - b)
  const longest = step => Math.max(0, ...probing.waits.filter(w => w.at + w.ms >= step.from && w.at <= step.from + step.ms).map(w => w.ms))
  results.migration = {
    runs: RUNS,
    fillSeconds,
    sizes,
    before,
    after,
    steps: steps.map(s => ({ version: s.version, ms: Math.round(s.ms), probeLongestMs: Math.round(longest(s)) })),
    probeP99Before: probeBefore[Math.floor(probeBefore.length * 0.99)]
  }
  console.log(JSON.stringify(results.migration))

  // --- 2. a retention pass dropping a day of runs under a paced load ------------------------------
  const port = await freePort()
  const gateway = spawn(process.execPath, [join(root, 'dist', 'server.js')], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL: databaseUrl, STRIPE_WEBHOOK_SECRET: SECRET, DATA_DIR: work, LOG_LEVEL: 'warn', RETENTION_INTERVAL_MS: String(DAY) },
    stdio: 'ignore'
  })
  try {
    await waitFor(`http://127.0.0.1:${port}/readyz`)
    await new Promise(resolve => setTimeout(resolve, 3000)) // its first retention pass (at boot) has ended
    // A day 40 days ago, filled after that pass: RUNS runs, two events each, 1 % failed, 1 % with an open exception.
    await setFsync(false)
    const day = new Date(Date.now() - 40 * DAY).toISOString().slice(0, 10)
    await query(databaseUrl, 'SELECT ops.ensure_day_partitions($1::date, $1::date)', [day])
    for (let from = 1; from <= RUNS; from += CHUNK) {
      await query(databaseUrl, `
        WITH ins AS (
          INSERT INTO ops.runs (run_id, provider, idempotency_key, event_type, status, payload, body_sha256, headers, received_at, started_at, completed_at, attempts)
          SELECT ops.uuid_v7(t.at), 'stripe', 'evt_day_' || i, 'payment_intent.succeeded',
            CASE i % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'exception' ELSE 'completed' END,
            jsonb_set($1::jsonb, '{id}', to_jsonb('evt_day_' || i)), sha256(int8send(i)), $2::jsonb, t.at, t.at, t.at, 1
          FROM generate_series($3::bigint, least($3::bigint + ${CHUNK - 1}, $4::bigint)) AS i,
            LATERAL (SELECT $5::date::timestamp AT TIME ZONE 'UTC' + make_interval(secs => i * 86000.0 / $4::bigint) AS at) AS t
          RETURNING run_id, received_at
        )
        INSERT INTO ops.run_events (run_id, type, at, data)
        SELECT run_id, t, received_at, '{"request_id": "req-1", "body_bytes": 1412}'::jsonb FROM ins, unnest(ARRAY['received', 'completed']) AS t`,
      [JSON.stringify(template), JSON.stringify(HEADERS), from, RUNS, day])
    }
    await query(databaseUrl, "INSERT INTO ops.exceptions (run_id, reason) SELECT run_id, 'amount_mismatch' FROM ops.runs WHERE status = 'exception' AND idempotency_key LIKE 'evt_day_%'")
    await query(databaseUrl, 'VACUUM ANALYZE')
    await query(server, 'CHECKPOINT')
    await setFsync(true)
    const partitionSize = (await query(databaseUrl, `SELECT pg_size_pretty(pg_total_relation_size('ops.runs_p${day.replaceAll('-', '')}')) AS runs,
      pg_size_pretty(pg_total_relation_size('ops.run_events_p${day.replaceAll('-', '')}')) AS events`)).rows[0]

    const paced = async seconds => {
      const requests = Array.from({ length: 1000 * seconds + 2000 }, () => {
        const body = Buffer.from(JSON.stringify({ ...template, id: `evt_${randomBytes(12).toString('hex')}` }))
        const t = Math.floor(Date.now() / 1000)
        const v1 = createHmac('sha256', SECRET).update(`${t}.`).update(body).digest('hex')
        return { method: 'POST', path: '/webhooks/stripe', body, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${v1}` } }
      })
      let next = 0
      const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections: 20, overallRate: 1000, duration: seconds, requests: [{ setupRequest: request => ({ ...request, ...requests[next++ % requests.length] }) }] })
      return { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max, non2xx: result.non2xx + result.errors, rps: Math.round(result.requests.average) }
    }
    await paced(3)
    const without = await paced(12)
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 })
    const load = paced(12)
    await new Promise(resolve => setTimeout(resolve, 2000))
    started = performance.now()
    const report = await maintain(pool, { retentionDays: 30, reviewDays: 30, refusalsDays: 7, dedupDays: 30 })
    const passMs = performance.now() - started
    const during = await load
    const withoutAfter = await paced(12)
    await pool.end()
    results.drop = { runs: RUNS, day, partitionSize, passMs: Math.round(passMs), held: report.held, dropped: report.dropped, without, during, withoutAfter }
    console.log(JSON.stringify(results.drop))
  } finally {
    gateway.kill('SIGTERM')
    await new Promise(resolve => gateway.once('exit', resolve))
  }
} finally {
  await database.stop()
  await rm(work, { recursive: true, force: true })
}

const m = results.migration
const d = results.drop
const date = new Date().toISOString().slice(0, 16).replace('T', ' ')
await writeFile(join(root, 'docs', 'benchmarks-lifecycle.md'), `# Data lifecycle: migration and retention under load

\`npm run bench:lifecycle\` (bench/lifecycle.mjs). Embedded PostgreSQL (shared_buffers 1 GB, fsync on
while measuring), on the machine that runs the load. Last run: ${date} UTC, ${process.version}.

## Migrating an install of the old layout (${m.runs.toLocaleString('en')} runs)

A database at migration 007 holding ${m.runs.toLocaleString('en')} runs (the 1.4 KB Stripe payload; ${m.sizes.runs} of runs,
${m.sizes.events} of run events: ${m.before.events.toLocaleString('en')} events, ${m.before.exceptions.toLocaleString('en')} exceptions), migrated one step at a time while
a probe inserts a run every 5 ms, as a replica of the previous release would keep doing. The probe's
longest wait during a step is how long that step held ingest up (p99 of the probe before the
migration: ${m.probeP99Before.toFixed(1)} ms).

| step | what it does | took | probe's longest wait |
|---|---|---|---|
| 008 | ops.run_keys filled from ops.runs (reads it; ingest goes on) | ${(m.steps[0].ms / 1000).toFixed(1)} s | ${m.steps[0].probeLongestMs} ms |
| 009 | the tier column and a NOT VALID check (no rewrite) | ${(m.steps[1].ms / 1000).toFixed(1)} s | ${m.steps[1].probeLongestMs} ms |
| 010 | the check validated (a read under a lock that lets writes through) | ${(m.steps[2].ms / 1000).toFixed(1)} s | ${m.steps[2].probeLongestMs} ms |
| 011 | under an exclusive lock: the keys stored meanwhile, the partitioned parents, the old tables attached | ${(m.steps[3].ms / 1000).toFixed(1)} s | ${m.steps[3].probeLongestMs} ms |

Rows before → after: runs ${m.before.runs.toLocaleString('en')} → ${m.after.runs.toLocaleString('en')} (plus the probe's), run events ${m.before.events.toLocaleString('en')} → ${m.after.events.toLocaleString('en')},
exceptions ${m.before.exceptions.toLocaleString('en')} → ${m.after.exceptions.toLocaleString('en')}.

## Dropping a day of ${d.runs.toLocaleString('en')} runs while deliveries arrive

A day 40 days old (${d.partitionSize.runs} of runs, ${d.partitionSize.events} of run events; 1 % failed, 1 % with an open
exception) dropped by one retention pass (RETENTION_DAYS=30) while a gateway takes a paced 1,000
unique Stripe deliveries/s (autocannon, 20 connections, 12 s). The pass took ${(d.passMs / 1000).toFixed(1)} s and held
${d.held.toLocaleString('en')} runs before dropping the day: those with an open exception (the failed ones failed 40 days ago,
past RETENTION_REVIEW_DAYS=30, went with the day).

| 12 s at 1,000/s | p50 ms | p99 ms | max ms | non-2xx |
|---|---|---|---|---|
| before the pass | ${d.without.p50} | ${d.without.p99} | ${d.without.max} | ${d.without.non2xx} |
| during the pass | ${d.during.p50} | ${d.during.p99} (${(d.during.p99 / d.without.p99).toFixed(2)}× before, ${(d.during.p99 / d.withoutAfter.p99).toFixed(2)}× after) | ${d.during.max} | ${d.during.non2xx} |
| after the pass | ${d.withoutAfter.p50} | ${d.withoutAfter.p99} | ${d.withoutAfter.max} | ${d.withoutAfter.non2xx} |

Reproduce: \`npm ci && npm run bench:lifecycle\` (\`BENCH_LIFECYCLE_RUNS=100000\` for a quick run).
`)
