// npm run bench:console: the operator console's pages with BENCH_CONSOLE_RUNS (default 1,000,000) runs
// stored (bench/fill.mjs: received over the last ~14 hours, 1 % failed, 1 % with an open exception),
// each page asked 20 times by a signed-in operator; the server time of each (mean and slowest), from
// Fastify's own clock (reply.elapsedTime). Prints a table for docs/console.md. Not a test.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmbeddedPostgres } from '../dist/db/embedded.js'
import { migrate } from '../dist/db/migrate.js'
import { loadConfig } from '../dist/config.js'
import { buildApp } from '../dist/app.js'
import { query } from '../test/lib/processes.mjs'
import { fill } from './fill.mjs'

const RUNS = Number(process.env.BENCH_CONSOLE_RUNS ?? 1_000_000)
const TOKEN = 'bench-admin-token-0123456789'
const work = await mkdtemp(join(tmpdir(), 'hookgate-console-'))
const quiet = { info () {}, debug () {}, warn () {} }
const database = await startEmbeddedPostgres(join(work, 'pg'), quiet, ['-c', 'max_wal_size=8GB'], work)
try {
  await query(database.connectionString, 'CREATE DATABASE console')
  const databaseUrl = database.connectionString.replace(/\/postgres$/, '/console')
  await migrate(databaseUrl)
  const loadStarted = performance.now()
  await fill(databaseUrl, RUNS)
  console.log(`${RUNS} runs stored in ${((performance.now() - loadStarted) / 1000).toFixed(0)} s`)

  const app = buildApp(loadConfig({ NODE_ENV: 'production', DATABASE_URL: databaseUrl, ADMIN_TOKEN: TOKEN, STRIPE_WEBHOOK_SECRET: 'whsec_bench_secret_0123456789abcdef', LOG_LEVEL: 'warn', DATA_DIR: work }))
  const served = []
  app.addHook('onResponse', async (_request, reply) => { served.push(reply.elapsedTime) })
  await app.ready()
  try {
    // Signed in as a browser would be: the form's CSRF token and the session cookie.
    const form = await app.inject({ method: 'GET', url: '/console/sign-in' })
    let cookie = String(form.headers['set-cookie']).split(';')[0]
    const csrf = /name="_csrf" value="([^"]+)"/.exec(form.body)[1]
    const signedIn = await app.inject({ method: 'POST', url: '/console/sign-in', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ _csrf: csrf, token: TOKEN }).toString() })
    cookie = String(signedIn.headers['set-cookie']).split(';')[0]
    const { rows: [{ run_id: runId }] } = await query(databaseUrl, "SELECT run_id FROM ops.runs WHERE status = 'exception' ORDER BY received_at DESC LIMIT 1")
    const { rows: [{ run_id: cursor }] } = await query(databaseUrl, 'SELECT run_id FROM ops.runs ORDER BY received_at DESC, run_id DESC OFFSET 5000 LIMIT 1')
    const pages = [
      ['runs, first page of 50', '/console/runs'],
      ['runs, a page 5,000 runs back (keyset)', `/console/runs?cursor=${cursor}`],
      ["runs, one provider's failed ones", '/console/runs?provider=stripe&status=failed'],
      ['runs, a time range', `/console/runs?since=${new Date(Date.now() - 7200_000).toISOString().slice(0, 16)}&until=${new Date(Date.now() - 3600_000).toISOString().slice(0, 16)}`],
      ['a run by its idempotency key', `/console/runs?search=evt_g_${Math.floor(RUNS / 2)}`],
      ['a run with its history and exception', `/console/runs/${runId}`],
      ['overview (last hour: counts and the minute chart)', '/console'],
      ['open exceptions', '/console/exceptions'],
      ['bulk retry count (every failed run)', '/console/retry?status=failed'],
      ['refusals, last 24 hours', '/console/refusals']
    ]
    const rows = []
    for (const [name, url] of pages) {
      await app.inject({ method: 'GET', url, headers: { cookie } })
      served.length = 0
      for (let i = 0; i < 20; i++) {
        const res = await app.inject({ method: 'GET', url, headers: { cookie } })
        if (res.statusCode !== 200 && res.statusCode !== 303) throw new Error(`${url}: ${res.statusCode}`)
      }
      rows.push({ page: name, 'mean ms': (served.reduce((a, b) => a + b, 0) / served.length).toFixed(1), 'slowest ms': Math.max(...served).toFixed(1) })
    }
    console.table(rows)
    console.log(`| page (${RUNS.toLocaleString('en')} runs stored) | server time, mean ms | slowest of 20 ms |\n|---|---|---|\n${rows.map(r => `| ${r.page} | ${r['mean ms']} | ${r['slowest ms']} |`).join('\n')}`)
  } finally {
    await app.close()
  }
} finally {
  await database.stop()
  await rm(work, { recursive: true, force: true })
}
