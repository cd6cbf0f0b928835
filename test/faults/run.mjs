// npm run test:faults — what hookgate survives, measured on real processes: a PostgreSQL cluster of
// Debian's packages (stopped, restarted, locked), gateway processes (killed -9), and a sender that
// retries every answer that is not 2xx, as providers do. For each fault: deliveries sent, answered
// 2xx, stored; the last two must match, and each event must be stored once. Writes the figures to
// docs/reliability.md (the hostile-input half of that page is test/hostile.test.ts, run by npm test).
import { execFile, execFileSync, spawn } from 'node:child_process'
import { promisify } from 'node:util'
import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { Agent, request } from 'undici'
import { freePort, query, waitFor } from '../lib/processes.mjs'

const root = join(import.meta.dirname, '..', '..')
const SECRET = 'whsec_faults_0123456789abcdef0123'
const QUERY_TIMEOUT_MS = 2000
/** @type {Array<{ name: string, sent: number | string, ok: number | string, stored: number | string, extra: string, pass: boolean, attempts?: number }>} */
const results = []
const hostile = []
const failures = []

const pgbin = ['/usr/lib/postgresql'].filter(existsSync).flatMap(dir => readdirSync(dir).map(v => join(dir, v, 'bin'))).find(dir => existsSync(join(dir, 'pg_ctl')))
if (pgbin === undefined) {
  console.error('test:faults needs PostgreSQL from Debian (apt-get install postgresql): it stops and restarts a real server')
  process.exit(1)
}

const work = await mkdtemp(join(tmpdir(), 'hookgate-faults-'))
await chmod(work, 0o755)
const asPostgres = userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--'] : []
const pgdata = join(work, 'pgdata')
const pgPort = await freePort()
const password = randomBytes(12).toString('hex')
const children = new Set()

/** pg_ctl, without blocking this process: the sender keeps sending while the server stops and starts. */
async function pgctl (...args) {
  const [cmd, ...rest] = [...asPostgres, join(pgbin, 'pg_ctl'), '-D', pgdata, ...args]
  await promisify(execFile)(cmd, rest)
}
const pgOptions = `-p ${pgPort} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${pgdata}`
const startPg = () => pgctl('-l', join(pgdata, 'server.log'), '-w', '-o', pgOptions, 'start')
const stopPg = (mode = 'fast') => pgctl('-m', mode, '-w', 'stop')

try {
  await mkdir(pgdata, { mode: 0o700 })
  if (asPostgres.length > 0) execFileSync('chown', ['postgres:postgres', pgdata])
  await writeFile(join(work, 'pw'), password)
  if (asPostgres.length > 0) execFileSync('chown', ['postgres', join(work, 'pw')])
  execFileSync(asPostgres[0] ?? join(pgbin, 'initdb'), [...asPostgres.slice(1), ...(asPostgres.length > 0 ? [join(pgbin, 'initdb')] : []), '-D', pgdata, '-U', 'hookgate', `--pwfile=${join(work, 'pw')}`, '-A', 'scram-sha-256'], { stdio: 'ignore' })
  await startPg()
  const serverUrl = `postgres://hookgate:${password}@127.0.0.1:${pgPort}/postgres`
  const version = (await query(serverUrl, 'SHOW server_version')).rows[0].server_version

  await scenario('kill -9 of the gateway under load, restarted 1 s later', async ({ databaseUrl }) => {
    const gateway = await startGateway(databaseUrl)
    const events = makeEvents(2000)
    let restarted
    const sender = send(gateway.url, events, {
      onProgress: async (answered) => {
        if (answered === 600 && restarted === undefined) {
          restarted = (async () => {
            gateway.kill('SIGKILL')
            await new Promise(resolve => setTimeout(resolve, 1000))
            await gateway.restart()
          })()
        }
      }
    })
    const stats = await sender
    await restarted
    await gateway.stop()
    return { stats, events, extra: `killed after 600 answers; ${stats.networkErrors} refused or reset attempts retried` }
  })

  await scenario('PostgreSQL stopped (fast shutdown) for 10 s under load, then started', async ({ databaseUrl }) => {
    const gateway = await startGateway(databaseUrl)
    const events = makeEvents(3000)
    /** @type {Promise<{ from: number, to: number }> | undefined} */
    let outage
    const stats = await send(gateway.url, events, {
      onProgress: async (answered) => {
        if (answered === 500 && outage === undefined) {
          outage = (async () => {
            await stopPg('fast')
            const window = { from: performance.now(), to: Infinity }
            await new Promise(resolve => setTimeout(resolve, 10_000))
            window.to = performance.now()
            await startPg()
            return window
          })()
        }
      }
    })
    const window = await outage
    await gateway.stop()
    const during = stats.attemptsLog.filter(a => a.end > window.from + 50 && a.end < window.to)
    const ok = during.filter(a => a.status === 200).length
    const maxMs = Math.max(...during.map(a => a.ms))
    const withRetryAfter = during.filter(a => a.status === 503 && a.retryAfter !== undefined).length
    const unavailable = during.filter(a => a.status === 503).length
    check(ok === 0, 'no 2xx while PostgreSQL is down')
    check(unavailable > 0 && withRetryAfter === unavailable, 'every answer while down is 503 + Retry-After')
    check(maxMs < QUERY_TIMEOUT_MS + 3000, `no attempt hangs while down (longest ${Math.round(maxMs)} ms)`)
    return { stats, events, extra: `while down: ${during.length} attempts, ${unavailable} × 503 + Retry-After, ${during.length - unavailable} refused/reset, 0 × 2xx, longest ${Math.round(maxMs)} ms; recovered without a restart` }
  })

  await scenario('PostgreSQL restarted (fast shutdown) with transactions in flight', async ({ databaseUrl }) => {
    const gateway = await startGateway(databaseUrl)
    const events = makeEvents(3000)
    let restart
    const stats = await send(gateway.url, events, {
      onProgress: async (answered) => {
        if (answered === 800 && restart === undefined) restart = (async () => { await stopPg('fast'); await startPg() })()
      }
    })
    await restart
    await gateway.stop()
    return { stats, events, extra: `restarted after 800 answers; ${stats.status[503] ?? 0} × 503 answered meanwhile` }
  })

  await scenario('ops.runs locked for 8 s by another session (statements pile up, pool and queue exhausted)', async ({ databaseUrl }) => {
    const gateway = await startGateway(databaseUrl, { INGEST_MAX_PENDING: '200' })
    const events = makeEvents(2000)
    /** @type {Promise<{ from: number, to: number }> | undefined} */
    let lock
    const stats = await send(gateway.url, events, {
      concurrency: 64,
      onProgress: async (answered) => {
        if (answered === 300 && lock === undefined) {
          lock = (async () => {
            const client = new pg.Client({ connectionString: databaseUrl })
            await client.connect()
            await client.query('BEGIN')
            await client.query('LOCK TABLE ops.runs IN ACCESS EXCLUSIVE MODE')
            const window = { from: performance.now(), to: Infinity }
            await new Promise(resolve => setTimeout(resolve, 8000))
            window.to = performance.now()
            await client.query('ROLLBACK')
            await client.end()
            return window
          })()
        }
      }
    })
    const window = await lock
    await gateway.stop()
    // An attempt may wait for a statement slot (up to one statement timeout) before its own statement times out.
    const during = stats.attemptsLog.filter(a => a.start > window.from && a.start < window.to - 2 * QUERY_TIMEOUT_MS - 1000)
    const maxMs = Math.max(...stats.attemptsLog.map(a => a.ms))
    const shed = during.filter(a => a.status === 503).length
    check(maxMs < QUERY_TIMEOUT_MS + 3000, `every answer bounded (longest ${Math.round(maxMs)} ms, DB_QUERY_TIMEOUT_MS ${QUERY_TIMEOUT_MS})`)
    check(during.every(a => a.status !== 200), 'no 2xx while nothing can commit')
    return { stats, events, extra: `during the lock: ${during.length} attempts, ${shed} × 503 + Retry-After (statement timeout or full ingest queue); longest answer ${Math.round(maxMs)} ms` }
  })

  // Boot errors: a data directory the embedded database cannot use. A read-only and a full
  // filesystem are small tmpfs mounts (root only; skipped where mounting is not allowed).
  const mounts = []
  const mounted = (dir, options) => {
    try {
      execFileSync('mkdir', ['-p', dir])
      execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'ignore' })
      mounts.push(dir)
      return true
    } catch { return false }
  }
  /** @type {Array<[string, string, boolean]>} */
  const bootCases = [
    ['DATA_DIR under a file (not a directory)', '/dev/null/hookgate', true],
    ['DATA_DIR on a read-only filesystem', join(work, 'ro', 'data'), mounted(join(work, 'ro'), 'size=4m,ro')],
    ['DATA_DIR on a full filesystem (3 MB, initdb needs more)', join(work, 'full', 'data'), mounted(join(work, 'full'), 'size=3m')]
  ]
  try {
    for (const [name, dataDir, possible] of bootCases) {
      console.log(`\n${name}`)
      if (!possible) {
        results.push({ name, sent: '—', ok: '—', stored: '—', extra: 'skipped: tmpfs cannot be mounted on this machine', pass: true })
        continue
      }
      const started = performance.now()
      const { code, stderr } = await runToExit([join(root, 'dist', 'server.js')], { NODE_ENV: 'production', STRIPE_WEBHOOK_SECRET: SECRET, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1' })
      const lines = stderr.trim().split('\n')
      const ms = Math.round(performance.now() - started)
      const clear = check(code === 1 && lines.length === 1 && lines[0].startsWith('hookgate: ') && ms < 30_000, `${name}: exit 1 with one clear line`)
      console.log(`  ${lines[0]}`)
      results.push({ name, sent: '—', ok: '—', stored: '—', extra: `exit ${code} after ${ms} ms: \`${lines[0].slice(0, 200)}\``, pass: clear })
    }
  } finally {
    for (const dir of mounts) { try { execFileSync('umount', [dir]) } catch {} }
  }

  await hostileCases(serverUrl)
  await capturedDeliveryCases(serverUrl)

  await writeReport(version)
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  await stopPg('immediate').catch(() => {})
  await rm(work, { recursive: true, force: true })
}
console.table(results.map(r => ({ fault: r.name.slice(0, 70), sent: r.sent, '2xx': r.ok, stored: r.stored, pass: r.pass })))
if (failures.length > 0) {
  console.log(`FAILED: ${failures.join('; ')}`)
  process.exit(1)
}
console.log('faults suite passed')

// --- helpers ------------------------------------------------------------------------------------

function check (ok, what) {
  if (!ok) failures.push(what)
  console.log(`  ${ok ? '✓' : '✗'} ${what}`)
  return ok
}

async function scenario (name, body) {
  console.log(`\n${name}`)
  const databaseUrl = await newDatabase(`postgres://hookgate:${password}@127.0.0.1:${pgPort}/postgres`, 'faults')
  const before = failures.length
  const { stats, events, extra } = await body({ databaseUrl })
  const ids = events.map(e => e.id)
  const [{ runs, keys }] = (await query(databaseUrl, "SELECT count(*)::int AS runs, count(DISTINCT idempotency_key)::int AS keys FROM ops.runs WHERE provider = 'stripe' AND idempotency_key = ANY($1)", [ids])).rows
  const answered = [...stats.runIds.values()]
  const [{ found }] = (await query(databaseUrl, 'SELECT count(*)::int AS found FROM ops.runs WHERE run_id = ANY($1::uuid[])', [answered])).rows
  check(stats.ok === events.length, `every delivery answered 2xx in the end (${stats.ok}/${events.length})`)
  check(runs === events.length && keys === events.length, `each event stored exactly once (${runs} runs)`)
  check(found === stats.ok, `every run id answered 2xx is stored (${found}/${stats.ok})`)
  console.log(`  attempts ${stats.attempts}, by status ${JSON.stringify(stats.status)}, network errors ${stats.networkErrors}; ${extra}`)
  results.push({ name, sent: events.length, attempts: stats.attempts, ok: stats.ok, stored: runs, extra, pass: failures.length === before })
}

/** A new database on the suite's server, named `<prefix>_<random>`: its URL. */
async function newDatabase (serverUrl, prefix) {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`
  await query(serverUrl, `CREATE DATABASE ${name}`)
  return serverUrl.replace(/\/postgres$/, `/${name}`)
}

function makeEvents (n) {
  return Array.from({ length: n }, (_, i) => ({
    id: `evt_f_${randomBytes(10).toString('hex')}`,
    object: 'event',
    type: 'invoice.paid',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: `in_${i}`, object: 'invoice', amount_paid: 100 + i, currency: 'eur' } }
  }))
}

/** Sends every event until it is answered 2xx (a provider's retries, compressed: 100 ms, then 250 ms). */
/**
 * @param {string} url
 * @param {Array<{ id: string }>} events
 * @param {{ concurrency?: number, onProgress?: (answered: number) => Promise<void> }} [options]
 */
async function send (url, events, { concurrency = 16, onProgress = async () => {} } = {}) {
  const agent = new Agent({ connections: concurrency, keepAliveTimeout: 5000, connect: { timeout: 2000 } })
  const stats = { attempts: 0, ok: 0, status: {}, networkErrors: 0, runIds: new Map(), attemptsLog: [] }
  let next = 0
  const deadline = Date.now() + 120_000
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < events.length) {
      const event = events[next++]
      const body = JSON.stringify(event)
      for (let attempt = 1; Date.now() < deadline; attempt++) {
        stats.attempts++
        const t = Math.floor(Date.now() / 1000)
        const signature = `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex')}`
        const start = performance.now()
        let status
        let retryAfter
        try {
          const response = await request(`${url}/webhooks/stripe`, {
            method: 'POST',
            body,
            dispatcher: agent,
            headersTimeout: 30_000,
            bodyTimeout: 30_000,
            headers: { 'content-type': 'application/json', 'stripe-signature': signature }
          })
          const text = await response.body.text()
          status = response.statusCode
          retryAfter = response.headers['retry-after']
          stats.status[status] = (stats.status[status] ?? 0) + 1
          if (status === 200) stats.runIds.set(event.id, JSON.parse(text).run_id)
        } catch {
          stats.networkErrors++
        }
        const end = performance.now()
        stats.attemptsLog.push({ start, end, ms: end - start, status, retryAfter })
        if (status === 200) {
          stats.ok++
          await onProgress(stats.ok)
          break
        }
        await new Promise(resolve => setTimeout(resolve, attempt === 1 ? 100 : 250))
      }
    }
  }))
  await agent.close()
  return stats
}

async function startGateway (databaseUrl, env = {}) {
  const port = await freePort()
  const fullEnv = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    DATABASE_URL: databaseUrl,
    STRIPE_WEBHOOK_SECRET: SECRET,
    DATA_DIR: join(work, `gw-${port}`),
    ROLE: 'ingest',
    LOG_LEVEL: 'warn',
    DB_CONNECT_TIMEOUT_MS: '1000',
    DB_QUERY_TIMEOUT_MS: String(QUERY_TIMEOUT_MS),
    ...env
  }
  let child
  const gateway = {
    url: `http://127.0.0.1:${port}`,
    async restart () {
      child = spawn(process.execPath, [join(root, 'dist', 'server.js')], { env: fullEnv, stdio: 'ignore' })
      children.add(child)
      await waitFor(`${gateway.url}/readyz`)
    },
    kill (signal) { child.kill(signal) },
    child () { return child },
    async stop () {
      if (child.exitCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
  await gateway.restart()
  return gateway
}

async function runToExit (args, env) {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  children.add(child)
  let stderr = ''
  child.stderr.on('data', chunk => { stderr += chunk })
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  const code = await new Promise(resolve => child.once('exit', resolve))
  clearTimeout(timer)
  return { code, stderr }
}

// --- hostile cases of issue 13, measured on a real gateway process ---------------------------------

async function hostileCases (serverUrl) {
  console.log('\nhostile cases')
  const databaseUrl = await newDatabase(serverUrl, 'hostile')
  const TOKEN = 'twilio_faults_token'
  const GITHUB = 'github faults secret'
  const gateway = await startGateway(databaseUrl, {
    TWILIO_AUTH_TOKEN: TOKEN, GITHUB_WEBHOOK_SECRET: GITHUB, PUBLIC_BASE_URL: 'https://hooks.example.com', AUTH_FAILURE_LIMIT: '100'
  })
  const agent = new Agent({ connections: 32 })
  const post = async (path, headers, body) => {
    const started = performance.now()
    const response = await request(`${gateway.url}${path}`, { method: 'POST', headers, body, dispatcher: agent })
    await response.body.text()
    return { status: response.statusCode, ms: performance.now() - started }
  }

  // 1. A form body of repeated empty fields, unauthenticated, beside /healthz.
  for (const kb of [88, 117]) {
    const body = 'a=&'.repeat(Math.floor(kb * 1024 / 3))
    const [refused, health] = await Promise.all([
      post('/webhooks/twilio', { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': 'RSOYDt4T1cUTdK1PDd93/VVr8B8=' }, body),
      (async () => { const started = performance.now(); await fetch(`${gateway.url}/healthz`); return performance.now() - started })()
    ])
    const ok = check(refused.status === 401 && refused.ms < 50, `${kb} KB form of repeated fields: ${refused.status} in ${refused.ms.toFixed(1)} ms`)
    hostile.push({ name: `Twilio form body of ${kb} KB of repeated empty fields (unauthenticated)`, figures: `401 \`too_many_fields\` in ${refused.ms.toFixed(1)} ms; /healthz meanwhile ${health.toFixed(1)} ms (issue 13 measured the event loop blocked ~${kb === 88 ? 8 : 11} s before the fix)`, pass: ok })
  }

  // 2. One client's refusals as fast as it can send them: 401, 415 and headers-only 413.
  const forged = JSON.stringify({ id: 'evt_forged', type: 'x' })
  const kinds = [
    () => post('/webhooks/stripe', { 'content-type': 'application/json', 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}` }, forged),
    () => post('/webhooks/stripe', { 'content-type': 'text/plain', 'stripe-signature': 't=1,v1=00' }, forged),
    () => headersOnly(gateway.url, '/webhooks/stripe', 100 * 1024 * 1024)
  ]
  const since = (await query(databaseUrl, 'SELECT now() AS t')).rows[0].t
  const started = performance.now()
  const statuses = {}
  let sent = 0
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (sent < 20_000) {
      const kind = kinds[sent++ % kinds.length]
      const { status } = await kind().catch(() => ({ status: 'error' }))
      statuses[status] = (statuses[status] ?? 0) + 1
    }
  }))
  const seconds = (performance.now() - started) / 1000
  await gateway.stop() // writes the last aggregate rows
  const [audit] = (await query(databaseUrl, `SELECT count(*) FILTER (WHERE type = 'rejected')::int AS single, count(*) FILTER (WHERE type = 'rejected_aggregate')::int AS aggregated,
    coalesce(sum((data->>'count')::int) FILTER (WHERE type = 'rejected_aggregate'), 0)::int AS counted FROM ops.run_events WHERE at >= $1::timestamptz - interval '1 minute' AND run_id IS NULL`, [since])).rows
  const rows = audit.single + audit.aggregated
  const okFlood = check(rows < 200 && audit.single + audit.counted >= 20_000, `20,000 refusals from one client: ${rows} audit rows (${JSON.stringify(audit)})`)
  hostile.push({ name: 'one client sends 20,000 refusals (forged 401, 415, headers-only 413 with a 100 MB Content-Length)', figures: `${Math.round(20_000 / seconds)} req/s, answers ${JSON.stringify(statuses)}; ${rows} rows written to ops.run_events: ${audit.single} refusals one by one until the limit (100 per client and minute, the Twilio cases above included), then ${audit.aggregated} \`rejected_aggregate\` rows counting ${audit.counted} (before the fix: one row per refusal that was not a 401)`, pass: okFlood })

  // 3. A captured GitHub delivery re-sent under 1,000 fresh delivery ids.
  await gateway.restart()
  const body = JSON.stringify({ action: 'opened', issue: { number: 1 }, repository: { full_name: 'octo/repo' } })
  const signature = `sha256=${createHmac('sha256', GITHUB).update(body).digest('hex')}`
  const answers = {}
  for (let i = 0; i < 1000; i++) {
    const { status } = await post('/webhooks/github', { 'content-type': 'application/json', 'x-hub-signature-256': signature, 'x-github-event': 'issues', 'x-github-delivery': randomBytes(16).toString('hex') }, body)
    answers[status] = (answers[status] ?? 0) + 1
  }
  const runs = (await query(databaseUrl, "SELECT count(*)::int AS n FROM ops.runs WHERE provider = 'github'")).rows[0].n
  const replays = (await query(databaseUrl, "SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'replayed_body'")).rows[0].n
  hostile.push({ name: 'a captured GitHub delivery re-sent under 1,000 fresh X-GitHub-Delivery ids', figures: `answers ${JSON.stringify(answers)}; ${runs} run, ${replays} \`replayed_body\` events (before the fix: 1,000 runs, each forwarded)`, pass: check(runs === 1 && replays === 999, `replays: ${runs} run`) })

  // 4. SIGTERM right after a burst on keep-alive connections (Node's http agent), three times.
  const exits = []
  for (let i = 0; i < 3; i++) {
    const http = await import('node:http')
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 50 })
    let last = 0
    let signalled = 0
    let answered = 0
    const exited = new Promise(resolve => gateway.child().once('exit', code => resolve({ code, at: performance.now() })))
    await Promise.all(makeEvents(150).map(async event => {
      const payload = JSON.stringify(event)
      const t = Math.floor(Date.now() / 1000)
      await new Promise(resolve => {
        const req = http.request(`${gateway.url}/webhooks/stripe`, { method: 'POST', agent: keepAlive, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${payload}`).digest('hex')}` } }, res => {
          res.resume()
          res.on('end', () => { last = performance.now(); if (++answered === 100) { signalled = last; gateway.kill('SIGTERM') } resolve() })
        })
        req.on('error', resolve)
        req.end(payload)
      })
    }))
    if (signalled === 0) { signalled = performance.now(); gateway.kill('SIGTERM') }
    const { code, at } = await exited
    keepAlive.destroy()
    exits.push({ code, ms: Math.round(at - Math.max(last, signalled)) })
    if (i < 2) await gateway.restart()
  }
  hostile.push({ name: 'SIGTERM right after a burst of 150 deliveries on keep-alive connections (3 runs)', figures: `exit ${exits.map(e => `${e.code} ${e.ms} ms`).join(', ')} after the last answer (before the fix: exit 1 at the 10 s deadline, 3 of 3)`, pass: check(exits.every(e => e.code === 0 && e.ms < 2000), `SIGTERM after a burst: ${JSON.stringify(exits)}`) })
  await agent.close()

  // 5. Destination answers: 300 MB, a gzip bomb (forwarding code, in this process).
  const { loadDestinations } = await import('../../dist/destinations.js')
  const { gzipSync } = await import('node:zlib')
  const http = await import('node:http')
  const bomb = gzipSync(Buffer.alloc(512 * 1024 * 1024))
  const sink = http.createServer((req, res) => {
    req.resume()
    if (req.url === '/bomb') { res.writeHead(409, { 'content-encoding': 'gzip' }); res.end(bomb); return }
    res.writeHead(500)
    const chunk = Buffer.alloc(1024 * 1024, 'x')
    let written = 0
    const write = () => { while (written < 300 * 1024 * 1024) { written += chunk.length; if (!res.write(chunk)) { res.once('drain', write); return } } res.end() }
    res.on('close', () => res.removeAllListeners('drain'))
    write()
  })
  await new Promise(resolve => sink.listen(0, '127.0.0.1', () => { resolve(undefined) }))
  const base = `http://127.0.0.1:${/** @type {import('node:net').AddressInfo} */ (sink.address()).port}`
  const destinations = await loadDestinations(JSON.stringify([{ name: 'huge', url: `${base}/huge`, secretEnv: 'S' }, { name: 'bomb', url: `${base}/bomb`, secretEnv: 'S' }]), { S: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  const rss = process.memoryUsage().rss
  const outcomes = await Promise.all(destinations.map(d => d.forward({ run_id: randomBytes(16).toString('hex'), provider: 'stripe', event_type: 'x', payload: {} })))
  const grew = Math.round((process.memoryUsage().rss - rss) / 1024 / 1024)
  sink.closeAllConnections()
  sink.close()
  hostile.push({ name: 'a destination answers 300 MB, another a 500 KB gzip bomb (512 MB inflated)', figures: `outcomes ${outcomes.map(o => o.outcome).join(', ')}; RSS grew ${grew} MB (issue 13 measured 2–3 GB before the fix)`, pass: check(grew < 100, `destination answers: RSS +${grew} MB`) })
}

// --- hostile cases of issue 28: what one captured delivery can be made into, clocks, erasure ------

async function capturedDeliveryCases (serverUrl) {
  console.log('\ncaptured deliveries, clocks, erasure (issue 28)')
  const databaseUrl = await newDatabase(serverUrl, 'captured')
  const TWILIO = 'twilio_faults_token'
  const GITHUB = 'github faults secret'
  const SHOPIFY = 'shopify faults secret'
  const ADMIN = 'admin-faults-token-0123456789'
  const gateway = await startGateway(databaseUrl, {
    TWILIO_AUTH_TOKEN: TWILIO,
    GITHUB_WEBHOOK_SECRET: GITHUB,
    SHOPIFY_WEBHOOK_SECRET: SHOPIFY,
    ADMIN_TOKEN: ADMIN,
    PUBLIC_BASE_URL: 'https://hooks.example.com',
    AUTH_FAILURE_LIMIT: '100000',
    BODY_LIMIT_BYTES: String(26 * 1024 * 1024)
  })
  const agent = new Agent({ connections: 64 })
  const post = async (path, headers, body) => {
    const started = performance.now()
    try {
      const response = await request(`${gateway.url}${path}`, { method: 'POST', headers, body, dispatcher: agent })
      const text = await response.body.text()
      return { status: response.statusCode, json: text.startsWith('{') ? JSON.parse(text) : {}, ms: performance.now() - started }
    } catch (err) {
      return { status: 'error', json: {}, ms: performance.now() - started, err }
    }
  }
  const tally = (answers) => answers.reduce((all, a) => { const k = `${a.status} ${a.json.status ?? a.json.reason ?? ''}`.trim(); all[k] = (all[k] ?? 0) + 1; return all }, {})
  const count = async (sql, values) => (await query(databaseUrl, sql, values)).rows[0].n
  const twilioSign = (params) => {
    const url = 'https://hooks.example.com/webhooks/twilio'
    const data = Object.keys(params).sort().map(k => k + params[k]).join('')
    return createHmac('sha1', TWILIO).update(url + data).digest('base64')
  }
  const form = { 'content-type': 'application/x-www-form-urlencoded' }
  const sid = (p) => `${p}${randomBytes(16).toString('hex')}`

  // 1. Twilio: a captured body with `&=` appended, 1,000 times.
  const params = { MessageSid: sid('SM'), MessageStatus: 'delivered', To: '+18005551212', From: '+14158675309' }
  const signature = twilioSign(params)
  const plain = new URLSearchParams(params).toString()
  await post('/webhooks/twilio', { ...form, 'x-twilio-signature': signature }, plain)
  const started = performance.now()
  const altered = []
  for (let i = 1; i <= 1000; i += 50) {
    altered.push(...await Promise.all(Array.from({ length: 50 }, (_, j) => post('/webhooks/twilio', { ...form, 'x-twilio-signature': signature }, plain + '&='.repeat(i + j)))))
  }
  const alteredSeconds = (performance.now() - started) / 1000
  const twilioExceptions = await count('SELECT count(*)::int AS n FROM ops.exceptions')
  hostile.push({ name: 'Twilio: a captured delivery with `&=` appended, 1,000 times', figures: `answers ${JSON.stringify(tally(altered))} in ${alteredSeconds.toFixed(1)} s; ${twilioExceptions} exceptions (651cd06: 1,000 open exceptions, each with a copy, in 1.9 s)`, pass: check(twilioExceptions === 0, `Twilio &=: ${twilioExceptions} exceptions`) })

  // 2. Twilio: key parameters re-split or repeated, 11 variants of one capture.
  const resplits = [
    `MessageSid=${params.MessageSid}MessageStatusdelivered&To=%2B18005551212&From=%2B14158675309`,
    `${plain}&MessageStatus=delivered`,
    `MessageSid=${params.MessageSid}&MessageStatus=deliveredTo%2B18005551212&From=%2B14158675309`
  ]
  const resplitAnswers = []
  for (let i = 0; i < 11; i++) resplitAnswers.push(await post('/webhooks/twilio', { ...form, 'x-twilio-signature': signature, 'i-twilio-idempotency-token': randomBytes(8).toString('hex') }, resplits[i % 3]))
  const twilioRuns = await count("SELECT count(*)::int AS n FROM ops.runs WHERE provider = 'twilio'")
  hostile.push({ name: 'Twilio: the signed key parameters re-split or repeated, 11 deliveries of one capture', figures: `answers ${JSON.stringify(tally(resplitAnswers))}; ${twilioRuns} run (651cd06: 11 new runs)`, pass: check(twilioRuns === 1, `Twilio re-split: ${twilioRuns} runs`) })

  // 3. GitHub: a 0.3 MB push A re-sent 100 times under B's X-GitHub-Delivery.
  const push = (n) => JSON.stringify({ ref: 'refs/heads/main', commits: [{ id: randomBytes(20).toString('hex'), message: `change ${n}`, diff: 'x'.repeat(300_000) }] })
  const ghHeaders = async (body, delivery) => ({ 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${createHmac('sha256', GITHUB).update(body).digest('hex')}`, 'x-github-event': 'push', 'x-github-delivery': delivery })
  const targetId = randomUUID()
  const bodyB = push(0)
  const runB = (await post('/webhooks/github', await ghHeaders(bodyB, targetId), bodyB)).json.run_id
  const bodyA = push(1)
  const sizeBefore = await count("SELECT (pg_total_relation_size('ops.exceptions'))::bigint AS n")
  const conflicts = []
  for (let i = 0; i < 100; i++) conflicts.push(await post('/webhooks/github', await ghHeaders(bodyA, targetId), bodyA))
  const grewMb = (Number(await count("SELECT (pg_total_relation_size('ops.exceptions'))::bigint AS n")) - Number(sizeBefore)) / 1024 / 1024
  const ghExceptions = await count('SELECT count(*)::int AS n FROM ops.exceptions WHERE run_id = $1', [runB])
  const rssBefore = rssMb(gateway)
  const page = await request(`${gateway.url}/admin/runs/${runB}`, { headers: { authorization: `Bearer ${ADMIN}` }, dispatcher: agent })
  const pageBytes = (await page.body.text()).length
  const live = await post('/webhooks/github', await ghHeaders('{"zen":"live"}', randomUUID()), '{"zen":"live"}')
  hostile.push({ name: 'GitHub: a 0.3 MB push re-sent 100 times under another delivery\'s X-GitHub-Delivery', figures: `answers ${JSON.stringify(tally(conflicts))}; ${ghExceptions} open exception counting ${await count("SELECT (details->>'deliveries')::int AS n FROM ops.exceptions WHERE run_id = $1", [runB])} deliveries, ops.exceptions +${grewMb.toFixed(1)} MB; the run in the admin API ${(pageBytes / 1024).toFixed(0)} KB; gateway RSS ${rssBefore} MB; a live delivery meanwhile ${live.ms.toFixed(0)} ms (651cd06: 100 exceptions, +27.9 MB, a 34.6 MB run page, 447 MB, 670 ms)`, pass: check(ghExceptions === 1 && grewMb < 2 && pageBytes < 1_000_000, `GitHub conflicts: ${ghExceptions} exceptions, +${grewMb.toFixed(1)} MB, ${pageBytes} bytes`) })

  // 4. Shopify: one captured orders/create body under 20 topics.
  const order = JSON.stringify({ id: 820982911946154500, admin_graphql_api_id: 'gid://shopify/Order/820982911946154508', email: 'jon@example.com', total_price: '403.00' })
  const topics = ['orders/create', 'orders/paid', 'orders/updated', 'orders/cancelled', 'orders/fulfilled', 'orders/partially_fulfilled', 'orders/edited', 'orders/delete',
    'refunds/create', 'products/create', 'products/update', 'customers/create', 'customers/update', 'draft_orders/create', 'fulfillments/create',
    'order_transactions/create', 'inventory_items/create', 'collections/create', 'app/uninstalled', 'carts/create']
  const shopify = []
  for (const topic of topics) {
    shopify.push(await post('/webhooks/shopify', {
      'content-type': 'application/json',
      'x-shopify-hmac-sha256': createHmac('sha256', SHOPIFY).update(order).digest('base64'),
      'x-shopify-topic': topic,
      'x-shopify-shop-domain': 'example.myshopify.com',
      'x-shopify-api-version': '2025-01',
      'x-shopify-webhook-id': randomUUID(),
      'x-shopify-event-id': randomUUID()
    }, order))
  }
  const shopifyRuns = await count("SELECT count(*)::int AS n FROM ops.runs WHERE provider = 'shopify'")
  hostile.push({ name: 'Shopify: one captured orders/create body sent under 20 topics', figures: `answers ${JSON.stringify(tally(shopify))}; ${shopifyRuns} runs, all \`orders/*\` (651cd06: 20 runs, e.g. a \`refunds/create\`); the order's own topics stay possible (orders/create and orders/paid may be the same bytes)`, pass: check(shopifyRuns === 8, `Shopify topics: ${shopifyRuns} runs`) })

  // 5. 40 forged 25 MB GitHub bodies at once, beside 11 genuine deliveries.
  const rss0 = rssMb(gateway)
  const huge = Buffer.alloc(25 * 1024 * 1024, 0x61)
  let peak = rss0
  const sampler = setInterval(() => { peak = Math.max(peak, rssMb(gateway)) }, 20)
  const forged = Array.from({ length: 40 }, () => post('/webhooks/github', { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${'0'.repeat(64)}`, 'x-github-event': 'push', 'x-github-delivery': randomUUID() }, huge))
  await new Promise(resolve => setTimeout(resolve, 50))
  const genuine = await Promise.all(Array.from({ length: 11 }, async (_, i) => { const b = JSON.stringify({ zen: `genuine ${i}` }); return await post('/webhooks/github', await ghHeaders(b, randomUUID()), b) }))
  const forgedAnswers = await Promise.all(forged)
  clearInterval(sampler)
  hostile.push({ name: '40 forged 25 MB GitHub bodies at once, 11 genuine deliveries meanwhile', figures: `forged: ${JSON.stringify(tally(forgedAnswers))}; genuine: ${JSON.stringify(tally(genuine))}; RSS ${rss0} → peak ${peak} MB (651cd06: 108 → 724 MB, 2 of 11 genuine got 503)`, pass: check(peak - rss0 < 250 && genuine.every(a => a.status === 200), `unverified bodies: RSS +${peak - rss0} MB, genuine ${JSON.stringify(tally(genuine))}`) })

  // 6. Forged deliveries from an operator's address, then the operator signs in.
  const forgedFlood = []
  const limited = await startGateway(databaseUrl, { GITHUB_WEBHOOK_SECRET: GITHUB, ADMIN_TOKEN: ADMIN, AUTH_FAILURE_LIMIT: '100' })
  for (let i = 0; i < 150; i++) forgedFlood.push((await request(`${limited.url}/webhooks/stripe`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': 't=1,v1=00' }, body: '{}', dispatcher: agent })).statusCode)
  const signIn = await request(`${limited.url}/admin/runs?limit=1`, { headers: { authorization: `Bearer ${ADMIN}` }, dispatcher: agent })
  await signIn.body.text()
  await limited.stop()
  hostile.push({ name: '150 forged deliveries from an operator\'s address, then the operator uses the admin API', figures: `forged: ${JSON.stringify(forgedFlood.reduce((a, s) => { a[s] = (a[s] ?? 0) + 1; return a }, {}))}; the operator: ${signIn.statusCode} (651cd06: 429, locked out with the forger)`, pass: check(signIn.statusCode === 200, `operator after a flood: ${signIn.statusCode}`) })
  await gateway.stop()
  await agent.close()

  // 7. A worker replica whose clock runs 40 days ahead of the database (libfaketime).
  const faketime = ['/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'].find(existsSync)
  if (faketime === undefined) {
    hostile.push({ name: 'a worker replica 40 days ahead of the database', figures: 'skipped: libfaketime is not installed (apt-get install faketime)', pass: true })
  } else {
    const partitions = async () => (await query(databaseUrl, "SELECT count(*)::int AS n FROM pg_class WHERE relnamespace = 'ops'::regnamespace AND relname ~ '^runs_p[0-9]{8}$'")).rows[0].n
    const before = { partitions: await partitions(), runs: await count('SELECT count(*)::int AS n FROM ops.runs'), keys: await count('SELECT count(*)::int AS n FROM ops.run_keys') }
    const port = await freePort()
    const ahead = spawn(process.execPath, [join(root, 'dist', 'server.js')], {
      env: { PATH: process.env.PATH, NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), DATABASE_URL: databaseUrl, STRIPE_WEBHOOK_SECRET: SECRET, ROLE: 'worker', RETENTION_INTERVAL_MS: '1000', METRICS_PUBLIC: 'true', LOG_LEVEL: 'warn', DATA_DIR: join(work, 'ahead'), LD_PRELOAD: faketime, FAKETIME: '+40d', FAKETIME_DONT_FAKE_MONOTONIC: '1' },
      stdio: ['ignore', 'pipe', 'ignore']
    })
    children.add(ahead)
    let log = ''
    ahead.stdout.on('data', chunk => { log += chunk })
    await waitFor(`http://127.0.0.1:${port}/readyz`)
    await new Promise(resolve => setTimeout(resolve, 3000))
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
    const skew = Number(/^hookgate_clock_skew_seconds (\S+)$/m.exec(metrics)?.[1])
    ahead.kill('SIGTERM')
    await new Promise(resolve => ahead.once('exit', resolve))
    const after = { partitions: await partitions(), runs: await count('SELECT count(*)::int AS n FROM ops.runs'), keys: await count('SELECT count(*)::int AS n FROM ops.run_keys') }
    const skipped = (log.match(/retention pass skipped/g) ?? []).length
    hostile.push({ name: 'a worker replica whose clock runs 40 days ahead of the database (libfaketime), retention every second', figures: `partitions ${before.partitions} → ${after.partitions}, runs ${before.runs} → ${after.runs}, keys ${before.keys} → ${after.keys}; ${skipped} passes skipped with an error line; hookgate_clock_skew_seconds ${(skew / 86400).toFixed(1)} days (651cd06: today's partition and the three ahead dropped, 22 runs → 1, 21 keys pruned, ingest 503 until the next pass)`, pass: check(after.partitions === before.partitions && after.runs === before.runs && after.keys === before.keys && skipped > 0, `clock 40 days ahead: ${JSON.stringify({ before, after, skipped })}`) })
  }

  // 8. Erasure by path on 1,000,000 runs, page by page.
  const { fill } = await import('../../bench/fill.mjs')
  const fillStarted = performance.now()
  await fill(databaseUrl, 1_000_000)
  const fillSeconds = ((performance.now() - fillStarted) / 1000).toFixed(0)
  const eraser = await startGateway(databaseUrl, { ADMIN_TOKEN: ADMIN, DB_QUERY_TIMEOUT_MS: '10000' })
  const calls = []
  let cursor
  const eraseStarted = performance.now()
  do {
    const callStarted = performance.now()
    const response = await request(`${eraser.url}/admin/erasure`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ provider: 'stripe', path: ['data', 'object', 'customer'], value: 'cus_nobody', ...(cursor === undefined ? {} : { cursor }) }) })
    const answer = /** @type {{ scanned?: number, next_cursor?: string | null }} */ (await response.body.json())
    calls.push({ status: response.statusCode, ms: performance.now() - callStarted, scanned: answer.scanned })
    cursor = answer.next_cursor ?? undefined
  } while (cursor !== undefined && calls.length < 100)
  await eraser.stop()
  const slowest = Math.max(...calls.map(c => c.ms))
  const scanned = calls.reduce((a, c) => a + (c.scanned ?? 0), 0)
  hostile.push({ name: 'erasure by JSON path over 1,000,000 runs (no run matches: the whole table read)', figures: `${calls.length} calls of up to 50,000 runs, statuses ${JSON.stringify(tally(calls.map(c => ({ status: c.status, json: {} }))))}, ${scanned} runs read in ${((performance.now() - eraseStarted) / 1000).toFixed(1)} s, the slowest call ${slowest.toFixed(0)} ms (DB_QUERY_TIMEOUT_MS 10,000; filled in ${fillSeconds} s) (651cd06: one statement over every run of the provider, 0.6–0.8 s for 300,000, a 500 past the timeout, about 4 M at the default)`, pass: check(calls.every(c => c.status === 200) && scanned >= 1_000_000 && slowest < 5000, `erasure on 1 M runs: ${calls.length} calls, slowest ${slowest.toFixed(0)} ms`) })
}

/** The resident memory of a gateway process, in MB. */
function rssMb (gateway) {
  try {
    const status = execFileSync('cat', [`/proc/${gateway.child().pid}/status`]).toString()
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024)
  } catch { return 0 }
}

/** A request whose headers promise `length` bytes of body that never come: the answer's status. */
async function headersOnly (url, path, length) {
  const { connect } = await import('node:net')
  const { port } = new URL(url)
  return await new Promise(resolve => {
    const socket = connect(Number(port), '127.0.0.1')
    let answer = ''
    socket.on('data', chunk => {
      answer += chunk
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)
      if (status !== null) { socket.destroy(); resolve({ status: Number(status[1]) }) }
    })
    socket.on('error', () => resolve({ status: 'error' }))
    socket.on('close', () => resolve({ status: 'closed' }))
    socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`)
  })
}

async function writeReport (version) {
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ')
  const page = join(root, 'docs', 'reliability.md')
  const current = await readFile(page, 'utf8').catch(() => '')
  const table = ['| fault | deliveries | attempts | answered 2xx | stored | figures | result |', '|---|---|---|---|---|---|---|',
    ...results.map(r => `| ${r.name} | ${r.sent} | ${r.attempts ?? '—'} | ${r.ok} | ${r.stored} | ${r.extra.replaceAll('|', '\\|')} | ${r.pass ? 'pass' : '**FAIL**'} |`)].join('\n')
  const block = `<!-- faults:begin -->\nLast run: ${date} UTC, PostgreSQL ${version}, ${process.version}. Reproduce: \`npm run test:faults\`.\n\n${table}\n<!-- faults:end -->`
  let next = /<!-- faults:begin -->[\s\S]*<!-- faults:end -->/.test(current)
    ? current.replace(/<!-- faults:begin -->[\s\S]*<!-- faults:end -->/, block)
    : `${current}\n${block}\n`
  const hostileTable = ['| hostile case | figures | result |', '|---|---|---|',
    ...hostile.map(r => `| ${r.name} | ${r.figures.replaceAll('|', '\\|')} | ${r.pass ? 'pass' : '**FAIL**'} |`)].join('\n')
  const hostileBlock = `<!-- hostile:begin -->\nLast run: ${date} UTC, one gateway process (\`node dist/server.js\`, production) on PostgreSQL ${version}. Reproduce: \`npm run test:faults\`.\n\n${hostileTable}\n<!-- hostile:end -->`
  next = /<!-- hostile:begin -->[\s\S]*<!-- hostile:end -->/.test(next)
    ? next.replace(/<!-- hostile:begin -->[\s\S]*<!-- hostile:end -->/, hostileBlock)
    : `${next}\n${hostileBlock}\n`
  await writeFile(page, next)
}
