// npm run test:balancer — hookgate as deployed: PostgreSQL, three gateway processes on loopback and
// HAProxy (Debian's package) in front, health-checking /readyz. 2,000 Stripe-signed deliveries go
// through the balancer, 30 % of them duplicates sent at the same moment as their original (so to
// different replicas), and one replica is SIGTERMed in the middle. Expected: every delivery
// answered 2xx (the sender retries what is not), each distinct event stored exactly once, no 5xx
// caused by the drain, the drained replica exits 0. Prints the figures; exits 1 on any miss.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Stripe from 'stripe'
import { Agent, request } from 'undici'
import { startEmbeddedPostgres } from '../../dist/db/embedded.js'
import { freePort, query, waitFor } from '../lib/processes.mjs'

const root = join(import.meta.dirname, '..', '..')
const SECRET = 'whsec_balancer_test_0123456789abcdef'
const TOTAL = Number(process.env.BALANCER_DELIVERIES ?? 2000)
const DUPLICATE_SHARE = 0.3
const CONCURRENCY = 24
const stripe = new Stripe('sk_test_balancer')

const work = await mkdtemp(join(tmpdir(), 'hookgate-balancer-'))
const children = []
let database
const failures = []
const check = (ok, what) => { if (!ok) failures.push(what); console.log(`${ok ? '✓' : '✗'} ${what}`) }

try {
  // PostgreSQL: DATABASE_URL's server (a fresh database on it), or an embedded one.
  let serverUrl = process.env.DATABASE_URL
  if (serverUrl === undefined || serverUrl === '') {
    database = await startEmbeddedPostgres(join(work, 'pg'), { info () {}, debug () {}, warn () {} }, [], work)
    serverUrl = database.connectionString
  }
  const dbName = `hookgate_balancer_${randomBytes(4).toString('hex')}`
  await query(serverUrl, `CREATE DATABASE ${dbName}`)
  const url = new URL(serverUrl)
  url.pathname = `/${dbName}`
  const databaseUrl = url.toString()

  // Three replicas. The first one migrates; the others wait on the same advisory lock.
  const ports = [await freePort(), await freePort(), await freePort()]
  const replicas = ports.map((port, index) => {
    const child = spawn(process.execPath, [join(root, 'dist', 'server.js')], {
      env: {
        PATH: process.env.PATH,
        NODE_ENV: 'production',
        HOST: '127.0.0.1',
        PORT: String(port),
        DATABASE_URL: databaseUrl,
        STRIPE_WEBHOOK_SECRET: SECRET,
        DATA_DIR: join(work, `replica-${index}`),
        TRUST_PROXY: '127.0.0.1',
        DRAIN_DELAY_MS: '2500',
        SHUTDOWN_TIMEOUT_MS: '10000',
        LOG_LEVEL: 'warn'
      },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', chunk => { stderr += chunk })
    const exited = new Promise(resolve => child.once('exit', (code, signal) => resolve({ code, signal, stderr })))
    children.push(child)
    return { name: `r${index + 1}`, port, child, exited }
  })
  await Promise.all(ports.map(port => waitFor(`http://127.0.0.1:${port}/readyz`)))

  // HAProxy: round robin, /readyz checked every 500 ms (down after 2 failures), connection
  // failures and empty answers retried on another replica (a delivery is idempotent by its key).
  const lbPort = await freePort()
  const cfg = join(work, 'haproxy.cfg')
  await writeFile(cfg, `global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  retries 3
  option redispatch
  retry-on conn-failure empty-response response-timeout
frontend hookgate
  bind 127.0.0.1:${lbPort}
  option forwardfor
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  http-response set-header x-served-by %s
  default-server inter 500 fastinter 250 fall 2 rise 2
${replicas.map(r => `  server ${r.name} 127.0.0.1:${r.port} check`).join('\n')}
`)
  const haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let haproxyLog = ''
  haproxy.stderr.on('data', chunk => { haproxyLog += chunk })
  children.push(haproxy)
  await waitFor(`http://127.0.0.1:${lbPort}/healthz`)
  await new Promise(resolve => setTimeout(resolve, 1500)) // every replica checked up

  // The deliveries: 70 % distinct events, 30 % copies of one of them sent right next to it.
  const distinct = Math.round(TOTAL * (1 - DUPLICATE_SHARE))
  const events = Array.from({ length: distinct }, (_, i) => ({
    id: `evt_lb_${randomBytes(10).toString('hex')}`,
    object: 'event',
    type: 'invoice.paid',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: `in_${i}`, object: 'invoice', amount_paid: 1000 + i, currency: 'eur' } }
  }))
  const jobs = events.map(event => ({ event, copies: 1 }))
  for (let i = 0; i < TOTAL - distinct; i++) jobs[Math.floor(Math.random() * jobs.length)].copies++

  const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 10_000 })
  const stats = { sent: 0, attempts: 0, answered2xx: 0, retried: 0, status: /** @type {Record<string, number>} */ ({}), networkErrors: 0, servedBy: /** @type {Record<string, number>} */ ({}), accepted: 0, duplicate: 0, runIds: new Map() }
  const drainAt = Math.floor(jobs.length / 2)
  /** @type {{ replica: (typeof replicas)[number], at: number } | undefined} */
  let drained
  let next = 0
  async function deliver (event) {
    const body = JSON.stringify(event)
    for (let attempt = 1; attempt <= 20; attempt++) {
      stats.attempts++
      if (attempt > 1) stats.retried++
      try {
        const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET })
        const response = await request(`http://127.0.0.1:${lbPort}/webhooks/stripe`, {
          method: 'POST', body, dispatcher: agent, headers: { 'content-type': 'application/json', 'stripe-signature': header }
        })
        const text = await response.body.text()
        stats.status[response.statusCode] = (stats.status[response.statusCode] ?? 0) + 1
        const server = String(response.headers['x-served-by'] ?? '?')
        stats.servedBy[server] = (stats.servedBy[server] ?? 0) + 1
        if (response.statusCode === 200) {
          const answer = JSON.parse(text)
          stats.answered2xx++
          stats[answer.status]++
          const seen = stats.runIds.get(event.id) ?? new Set()
          seen.add(answer.run_id)
          stats.runIds.set(event.id, seen)
          return
        }
      } catch {
        stats.networkErrors++
      }
      await new Promise(resolve => setTimeout(resolve, 100 * attempt))
    }
    failures.push(`${event.id}: never answered 2xx`)
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY / 2 }, async () => {
    while (next < jobs.length) {
      const job = jobs[next++]
      if (next === drainAt) {
        drained = { replica: replicas[1], at: performance.now() }
        replicas[1].child.kill('SIGTERM')
      }
      // The original and its copies at the same moment: round robin puts them on different replicas.
      stats.sent += job.copies
      await Promise.all(Array.from({ length: job.copies }, async () => await deliver(job.event)))
    }
  }))
  const seconds = (performance.now() - started) / 1000
  if (drained === undefined) throw new Error('no replica was drained')
  const { at: drainedAt } = drained
  const exit = await drained.replica.exited
  await agent.close()

  // What was stored.
  const [{ runs, distinctKeys }] = (await query(databaseUrl, `SELECT count(*)::int AS runs, count(DISTINCT idempotency_key)::int AS "distinctKeys"
    FROM ops.runs WHERE provider = 'stripe' AND idempotency_key = ANY($1)`, [events.map(e => e.id)])).rows
  const answeredIds = [...stats.runIds.values()].flatMap(set => [...set])
  const [{ found }] = (await query(databaseUrl, 'SELECT count(*)::int AS found FROM ops.runs WHERE run_id = ANY($1::uuid[])', [answeredIds])).rows
  const events5xx = Object.entries(stats.status).filter(([code]) => Number(code) >= 500).reduce((n, [, count]) => n + count, 0)

  console.log(`
hookgate behind HAProxy — 3 replicas, ${TOTAL} deliveries (${distinct} distinct events, ${TOTAL - distinct} duplicates sent alongside their original), replica r2 SIGTERMed after ${drainAt} events
  time: ${seconds.toFixed(1)} s (${Math.round(stats.attempts / seconds)} requests/s through the balancer)
  answers by status: ${JSON.stringify(stats.status)}; network errors: ${stats.networkErrors}; retries by the sender: ${stats.retried}
  served by: ${JSON.stringify(stats.servedBy)}
  accepted: ${stats.accepted}, duplicate: ${stats.duplicate}
  stored: ${runs} runs for ${distinctKeys} distinct keys (expected ${distinct}); run ids answered and found: ${found}/${answeredIds.length}
  drained replica: exit code ${exit.code}${exit.signal === null ? '' : ` (signal ${exit.signal})`}, ${Math.round(performance.now() - drainedAt)} ms after SIGTERM at most
`)
  check(stats.answered2xx === TOTAL, `every delivery answered 2xx (${stats.answered2xx}/${TOTAL})`)
  check(runs === distinct && distinctKeys === distinct, `each distinct event stored exactly once (${runs} runs, ${distinct} events)`)
  check(stats.accepted === distinct, `one "accepted" per event (${stats.accepted})`)
  check(answeredIds.length === distinct && found === distinct, 'every event answered with one run id, and that run is stored')
  check(events5xx === 0, `no 5xx (${events5xx})`)
  check(exit.code === 0, `the drained replica exits 0 (${exit.code})`)
  check((stats.servedBy.r2 ?? 0) > 0 && (stats.servedBy.r1 ?? 0) > 0 && (stats.servedBy.r3 ?? 0) > 0, 'all three replicas served')
  if (exit.code !== 0) console.log(exit.stderr.slice(-2000))
  if (failures.length > 0 && haproxyLog !== '') console.log(haproxyLog.slice(-2000))
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  if (database !== undefined) await database.stop()
  await rm(work, { recursive: true, force: true })
}
if (failures.length > 0) {
  console.log(`FAILED: ${failures.slice(0, 20).join('; ')}`)
  process.exit(1)
}
console.log('balancer test passed')
