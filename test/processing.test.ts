import { createServer, type IncomingMessage } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import { build, tempDir } from './helper.js'
import { deliverJob, jobsProviderDir, waitFor, JOBS_KEY } from './jobs.js'
import { backoffMs } from '../src/queue.js'
import { patternMatcher } from '../src/destinations.js'

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'
const DESTINATION_SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'

/** A loopback service standing in for an internal destination; it checks hookgate's signature. */
async function destinationServer (t: { teardown: (fn: () => Promise<void>) => void }) {
  const received: Array<{ path: string, runId: string, verified: boolean, body: unknown }> = []
  const server = createServer((request: IncomingMessage, response) => {
    let body = ''
    request.on('data', chunk => { body += chunk })
    request.on('end', () => {
      let verified = true
      try {
        new StandardWebhook(DESTINATION_SECRET).verify(body, request.headers as Record<string, string>)
      } catch {
        verified = false
      }
      received.push({ path: request.url ?? '', runId: String(request.headers['webhook-id']), verified, body: JSON.parse(body) })
      const status = { '/ok': 200, '/conflict': 409, '/bad': 400, '/boom': 500 }[request.url ?? ''] ?? 200
      if (request.url === '/slow') { setTimeout(() => response.end('late'), 1000); return }
      response.writeHead(status).end(status === 409 ? 'invoice INV-1 already paid' : 'ok')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise(resolve => server.close(resolve)) })
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, received }
}

t.test('processing: handler outcomes, destinations, payload conflicts, replay and the exception queue', async t => {
  const destination = await destinationServer(t)
  const effects = join(await tempDir(t), 'effects.log')
  process.env.EFFECTS_FILE = effects
  t.teardown(() => { delete process.env.EFFECTS_FILE })
  const destinations = ['ok', 'conflict', 'bad', 'boom', 'slow'].map(name => ({
    name, url: `${destination.url}/${name}`, secretEnv: 'DESTINATION_SECRET', providers: ['jobs'], events: [`forward.${name}`], timeoutMs: 200
  }))
  const { app } = await build(t, {
    ROLE: 'all',
    PROVIDERS_DIR: await jobsProviderDir(t),
    JOBS_KEY,
    ADMIN_TOKEN,
    DESTINATIONS: JSON.stringify(destinations),
    DESTINATION_SECRET,
    WORKER_POLL_MS: '50',
    WORKER_RETRY_BASE_MS: '20',
    WORKER_MAX_ATTEMPTS: '3',
    WORKER_CONCURRENCY: '8'
  })
  const admin = async (method: 'GET' | 'POST', url: string, body?: unknown) =>
    await app.inject({ method, url: `/admin${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, ...(body === undefined ? {} : { payload: body as object }) })
  const runOf = async (key: string) => (await app.pg.query('SELECT * FROM ops.runs WHERE idempotency_key = $1', [key])).rows[0]
  const historyOf = async (runId: string) => (await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [runId])).rows
  const settled = async (key: string) => await waitFor(async () => {
    const run = await runOf(key)
    return run !== undefined && ['completed', 'failed', 'exception', 'ignored'].includes(run.status) ? run : undefined
  }, `run ${key} to settle`)

  const types = ['ok', 'skip', 'flaky', 'broken', 'conflict', 'unhandled', 'forward.ok', 'forward.conflict', 'forward.bad', 'forward.boom', 'forward.slow']
  const keys = Object.fromEntries(types.map(type => [type, `${type}-${randomUUID()}`]))
  for (const type of types) t.equal((await deliverJob(app, { id: keys[type], type })).statusCode, 200, `${type} accepted`)

  await t.test('handler outcomes reach the right status and history', async t => {
    const ok = await settled(keys.ok)
    t.equal(ok.status, 'completed')
    t.same((await historyOf(ok.run_id)).map(e => e.type), ['received', 'processing', 'completed'])
    t.match((await historyOf(ok.run_id))[2].data, { attempt: 1, ms: Number, worker: String })
    t.equal((await settled(keys.skip)).status, 'ignored')
    const flaky = await settled(keys.flaky)
    t.match(flaky, { status: 'completed', attempts: 3 })
    t.same((await historyOf(flaky.run_id)).map(e => e.type), ['received', 'processing', 'retrying', 'processing', 'retrying', 'processing', 'completed'])
    t.match((await historyOf(flaky.run_id))[2].data, { attempt: 1, error: 'attempt 1 failed', retry_in_ms: 20 })
    const broken = await settled(keys.broken)
    t.match(broken, { status: 'failed', attempts: 3, last_error: 'handler bug' }, 'a throwing handler is retried, then fails')
    const conflict = await settled(keys.conflict)
    t.equal(conflict.status, 'exception')
    const { rows: [exception] } = await app.pg.query('SELECT reason, details, status FROM ops.exceptions WHERE run_id = $1', [conflict.run_id])
    t.same(exception, { reason: 'sor_conflict', details: { invoice: 'INV-1', ours: 100, theirs: 90 }, status: 'open' })
    t.equal((await settled(keys.unhandled)).status, 'completed', 'no handler and no destination: completed as stored')
    const effectLines = (await readFile(effects, 'utf8')).trim().split('\n')
    t.same(effectLines.filter(line => line === `done ${ok.run_id}`).length, 1, 'the handler ran once')
  })

  await t.test('destinations: re-signed with Standard Webhooks; 200, 409, 400, 500 and a timeout', async t => {
    const ok = await settled(keys['forward.ok'])
    t.equal(ok.status, 'completed')
    const delivered = destination.received.find(r => r.runId === ok.run_id)
    t.ok(delivered?.verified, 'the destination verifies hookgate\'s signature, webhook-id = run id')
    t.same(delivered?.body, { id: keys['forward.ok'], type: 'forward.ok' })
    const conflict = await settled(keys['forward.conflict'])
    t.equal(conflict.status, 'exception', '409: a conflict with the system of record')
    const { rows: [exception] } = await app.pg.query('SELECT reason, details FROM ops.exceptions WHERE run_id = $1', [conflict.run_id])
    t.same(exception, { reason: 'destination_conflict', details: { destination: 'conflict', status: 409, response: 'invoice INV-1 already paid' } })
    const bad = await settled(keys['forward.bad'])
    t.match(bad, { status: 'failed', attempts: 1, last_error: /destination bad answered 400/ }, 'other 4xx: failed at once')
    const boom = await settled(keys['forward.boom'])
    t.match(boom, { status: 'failed', attempts: 3, last_error: 'destination boom answered 500' }, '5xx: retried, then failed')
    t.equal(destination.received.filter(r => r.runId === boom.run_id).length, 3)
    const slow = await settled(keys['forward.slow'])
    t.match(slow, { status: 'failed', attempts: 3, last_error: 'destination slow: timed out after 200 ms' }, 'timeouts are retried')
  })

  await t.test('a payload conflict: same id, different signed body → recorded and raised for review', async t => {
    const key = `pc-${randomUUID()}`
    const first = (await deliverJob(app, { id: key, type: 'unhandled', amount: 100 })).json()
    const second = await deliverJob(app, { id: key, type: 'unhandled', amount: 90 })
    t.equal(second.statusCode, 200, 'committed: the sender must not retry it')
    t.same(second.json(), { status: 'conflict', run_id: first.run_id })
    const { rows: [exception] } = await app.pg.query("SELECT reason, details FROM ops.exceptions WHERE run_id = $1 AND reason = 'payload_conflict'", [first.run_id])
    t.same(exception.details.copies[0].payload, { id: key, type: 'unhandled', amount: 90 }, 'the conflicting payload is kept for the reviewer')
    t.same((await deliverJob(app, { id: key, type: 'unhandled', amount: 100 })).json().status, 'duplicate', 'the same bytes again are a plain duplicate')
  })

  await t.test('admin: replay re-processes the stored payload (a new run event, not a new run)', async t => {
    const ok = await settled(keys.ok)
    const replay = await admin('POST', `/runs/${ok.run_id}/replay`, { by: 'ops@example.com' })
    t.equal(replay.statusCode, 202)
    await waitFor(async () => (await historyOf(ok.run_id)).filter(e => e.type === 'completed').length === 2, 'the replay to complete')
    const history = (await historyOf(ok.run_id)).map(e => e.type)
    t.same(history, ['received', 'processing', 'completed', 'replay_requested', 'processing', 'completed'])
    const effectLines = (await readFile(effects, 'utf8')).trim().split('\n')
    t.equal(effectLines.filter(line => line === `done ${ok.run_id}`).length, 2, 'the handler ran again')
    t.equal((await app.pg.query('SELECT count(*)::int AS n FROM ops.runs WHERE idempotency_key = $1', [keys.ok])).rows[0].n, 1)
    t.equal((await admin('POST', `/runs/${randomUUID()}/replay`)).statusCode, 404)
  })

  await t.test('admin: runs listed, filtered and paged; one run with its history', async t => {
    const failedRuns = (await admin('GET', '/runs?status=failed&provider=jobs')).json()
    t.same(failedRuns.runs.map((r: { idempotency_key: string }) => r.idempotency_key).sort(),
      [keys.broken, keys['forward.bad'], keys['forward.boom'], keys['forward.slow']].sort())
    const seen = new Set<string>()
    let cursor: string | null = null
    let pages = 0
    do {
      const res: { runs: Array<{ run_id: string }>, next_cursor: string | null } = (await admin('GET', `/runs?limit=4${cursor === null ? '' : `&cursor=${cursor}`}`)).json()
      for (const run of res.runs) seen.add(run.run_id)
      cursor = res.next_cursor
      pages++
    } while (cursor !== null && pages < 20)
    const total = (await app.pg.query('SELECT count(*)::int AS n FROM ops.runs')).rows[0].n
    t.equal(seen.size, total, `keyset pagination visits every run once (${pages} pages)`)
    const one = (await admin('GET', `/runs/${(await runOf(keys.flaky)).run_id}`)).json()
    t.match(one, { status: 'completed', payload: { id: keys.flaky }, events: Array })
    t.equal(one.events.length, 7)
    t.equal((await admin('GET', '/runs?status=nope')).statusCode, 400)
    t.equal((await admin('GET', `/runs/${randomUUID()}`)).statusCode, 404)
  })

  await t.test('admin: the exception queue, resolved by retry or close, or dismissed', async t => {
    const open = (await admin('GET', '/exceptions')).json().exceptions as Array<{ exception_id: string, reason: string, run_id: string }>
    t.same(open.map(e => e.reason).sort(), ['destination_conflict', 'payload_conflict', 'sor_conflict'])
    const byReason = Object.fromEntries(open.map(e => [e.reason, e]))
    const retried = await admin('POST', `/exceptions/${byReason.destination_conflict.exception_id}/resolve`, { action: 'retry', by: 'ana', note: 'paid twice? try again' })
    t.match(retried.json(), { status: 'resolved', resolution: 'retry', closed_by: 'ana' })
    await waitFor(async () => (await historyOf(byReason.destination_conflict.run_id)).filter(e => e.type === 'exception').length === 2, 'the retried run to reach the destination again')
    const closed = await admin('POST', `/exceptions/${byReason.sor_conflict.exception_id}/resolve`, { action: 'close', note: 'credited by hand' })
    t.match(closed.json(), { status: 'resolved', resolution: 'close', note: 'credited by hand', closed_by: 'admin' })
    t.equal((await app.pg.query('SELECT status FROM ops.runs WHERE run_id = $1', [byReason.sor_conflict.run_id])).rows[0].status, 'completed')
    t.ok((await historyOf(byReason.sor_conflict.run_id)).some(e => e.type === 'exception_resolved' && e.data.note === 'credited by hand'))
    const dismissed = await admin('POST', `/exceptions/${byReason.payload_conflict.exception_id}/dismiss`, { note: 'test data' })
    t.equal(dismissed.json().status, 'dismissed')
    t.equal((await admin('POST', `/exceptions/${byReason.payload_conflict.exception_id}/dismiss`)).statusCode, 409, 'already closed')
    t.equal((await admin('POST', `/exceptions/${randomUUID()}/resolve`, { action: 'close' })).statusCode, 404)
    t.equal((await admin('POST', `/exceptions/${byReason.sor_conflict.exception_id}/resolve`, { action: 'delete' })).statusCode, 400)
    t.equal((await admin('GET', '/exceptions?status=dismissed')).json().exceptions.length, 1)
  })

  await t.test('admin: bearer token, compared in constant time; an OpenAPI document', async t => {
    t.equal((await app.inject({ method: 'GET', url: '/admin/runs' })).statusCode, 401, 'missing')
    t.equal((await app.inject({ method: 'GET', url: '/admin/runs', headers: { authorization: 'Bearer wrong' } })).statusCode, 401, 'wrong')
    t.equal((await app.inject({ method: 'GET', url: '/admin/runs', headers: { authorization: ADMIN_TOKEN } })).statusCode, 401, 'not a bearer')
    t.equal((await admin('GET', '/runs')).statusCode, 200, 'right')
    const openapi = (await admin('GET', '/openapi.json')).json()
    t.match(openapi, { openapi: /^3/, info: { title: 'hookgate admin API' } })
    t.ok(openapi.paths['/admin/runs/{runId}/replay'] !== undefined && openapi.paths['/admin/exceptions/{exceptionId}/resolve'] !== undefined)
  })
})

t.test('no ADMIN_TOKEN: no admin routes', async t => {
  const { app } = await build(t)
  t.equal((await app.inject({ method: 'GET', url: '/admin/runs', headers: { authorization: 'Bearer anything' } })).statusCode, 404)
})

t.test('backoff and patterns', async t => {
  t.equal(backoffMs(1, 1000, 60000, () => 0), 500)
  t.equal(backoffMs(1, 1000, 60000, () => 1), 1000)
  t.equal(backoffMs(4, 1000, 60000, () => 1), 8000)
  t.equal(backoffMs(30, 1000, 60000, () => 1), 60000, 'capped')
  const match = patternMatcher(['invoice.*', 'push'])
  t.ok(match('invoice.paid'))
  t.ok(match('push'))
  t.notOk(match('pushed'))
  t.notOk(match(null))
  t.ok(patternMatcher(undefined)(null))
})

t.test('a bad DESTINATIONS is a boot error that names the entry and field', async t => {
  await t.rejects(build(t, { ROLE: 'all', DESTINATIONS: JSON.stringify([{ name: 'x', url: 'ftp://x', secretEnv: 'X_SECRET' }]) }),
    { message: /invalid DESTINATIONS: DESTINATIONS\/0\/url must match pattern/ })
  await t.rejects(build(t, { ROLE: 'all', DESTINATIONS: JSON.stringify([{ name: 'billing', url: 'http://127.0.0.1:1/', secretEnv: 'BILLING_DESTINATION_SECRET' }]) }),
    { message: 'destination billing: BILLING_DESTINATION_SECRET is not set (a whsec_ secret to sign what it receives)' })
  await t.rejects(build(t, { ROLE: 'all', DESTINATIONS: '/nonexistent/destinations.json' }), { message: /DESTINATIONS: cannot read/ })
  await t.rejects(build(t, { ROLE: 'all', DESTINATIONS: '[oops' }), { message: /DESTINATIONS is not valid JSON/ })
})
