import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, freshDatabase, stripeDelivery, stripeEvent, tempDir } from './helper.js'
import { deliverJob, jobsProviderDir, waitFor, JOBS_KEY } from './jobs.js'

type Test = Parameters<typeof tempDir>[0]

/** An effects file (test/fixtures/jobs-provider.mjs) for the in-process workers of one test, and its lines. */
async function effectsFile (t: Test): Promise<() => Promise<string[]>> {
  const effects = join(await tempDir(t), 'effects.log')
  process.env.EFFECTS_FILE = effects
  t.teardown(() => { delete process.env.EFFECTS_FILE })
  return async () => (await readFile(effects, 'utf8').catch(() => '')).split('\n').filter(line => line !== '')
}

/** The most handlers that ran at once, from the effects' `start` and `done` lines. */
function mostAtOnce (lines: readonly string[]): number {
  let running = 0
  let most = 0
  for (const line of lines) {
    running += line.startsWith('start ') ? 1 : -1
    most = Math.max(most, running)
  }
  return most
}

/** A backlog: `count` slow runs stored by an ingest-only replica, for a worker built on the same database. */
async function slowBacklog (t: Test, count: number, ms: number) {
  const databaseUrl = await freshDatabase(t)
  const providersDir = await jobsProviderDir(t)
  const { app: ingestOnly } = await build(t, { DATABASE_URL: databaseUrl, ROLE: 'ingest', PROVIDERS_DIR: providersDir, JOBS_KEY })
  const ids: string[] = []
  for (let i = 0; i < count; i++) ids.push((await deliverJob(ingestOnly, { id: `slow-${randomUUID()}`, type: 'slow', ms })).json().run_id)
  const worker = async (env: Record<string, string>) =>
    (await build(t, { DATABASE_URL: databaseUrl, ROLE: 'worker', PROVIDERS_DIR: providersDir, JOBS_KEY, WORKER_CONCURRENCY: '2', WORKER_POLL_MS: '60000', ...env })).app
  return { ingestOnly, ids, worker }
}

// Issue 14: a run with nothing to do is completed by the statement that stores it.

t.test('no handler and no destination: completed at ingest, in the same commit as the 2xx', async t => {
  const destinations = JSON.stringify([{ name: 'billing', url: 'http://127.0.0.1:1/hook', secretEnv: 'BILLING_SECRET', events: ['invoice.*'] }])
  const { app } = await build(t, { ROLE: 'all', WORKER_POLL_MS: '60000', DESTINATIONS: destinations, BILLING_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  const run = async (runId: string) => (await app.pg.query('SELECT status, attempts, completed_at IS NOT NULL AS done FROM ops.runs WHERE run_id = $1', [runId])).rows[0]
  const history = async (runId: string) => (await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [runId])).rows

  const event = stripeEvent({ type: 'payment_intent.succeeded' })
  const answer = await app.inject(stripeDelivery(event))
  t.equal(answer.json().status, 'accepted')
  t.same(await run(answer.json().run_id), { status: 'completed', attempts: 0, done: true }, 'completed when the 2xx is sent, no worker involved')
  t.same((await history(answer.json().run_id)).map(e => [e.type, e.data.nothing_to_do]), [['received', undefined], ['completed', true]])
  t.same((await app.inject(stripeDelivery(event))).json(), { status: 'duplicate', run_id: answer.json().run_id }, 'a redelivery is still a duplicate')

  // A destination matches: the worker has something to do.
  const invoice = await app.inject(stripeDelivery(stripeEvent({ type: 'invoice.paid' })))
  t.match(await run(invoice.json().run_id), { status: /^(received|processing|retrying)$/ }, 'left to the worker')
})

t.test('an ingest-only replica cannot know the workers\' destinations: it leaves every run to them', async t => {
  const { app } = await build(t, { ROLE: 'ingest' })
  const answer = await app.inject(stripeDelivery(stripeEvent()))
  const { rows: [run] } = await app.pg.query('SELECT status FROM ops.runs WHERE run_id = $1', [answer.json().run_id])
  t.equal(run.status, 'received')
})

t.test('more deliveries in flight than WORKER_CONCURRENCY: each run claimed by the statement that stores it, slots never exceeded', async t => {
  const lines = await effectsFile(t)
  // Two slots, a 300 ms lease renewed every 100 ms, and no claim loop to speak of (a poll a minute).
  const { app } = await build(t, {
    ROLE: 'all', PROVIDERS_DIR: await jobsProviderDir(t), JOBS_KEY, WORKER_CONCURRENCY: '2', WORKER_LEASE_MS: '300', WORKER_POLL_MS: '60000'
  })
  const answers = await Promise.all(Array.from({ length: 6 }, async () =>
    (await deliverJob(app, { id: `slow-${randomUUID()}`, type: 'slow', ms: 700 })).json() as { status: string, run_id: string }))
  t.same(answers.map(a => a.status), Array(6).fill('accepted'))
  const ids = answers.map(a => a.run_id)

  // Two run, four wait in memory for a slot: all six keep a live lease past the first 300 ms.
  await new Promise(resolve => setTimeout(resolve, 500))
  const { rows: [leased] } = await app.pg.query(
    "SELECT count(*)::int AS n FROM ops.runs WHERE run_id = ANY($1::uuid[]) AND status = 'processing' AND locked_until > now()", [ids])
  t.equal(leased.n, 6, 'the runs waiting for a slot have their leases renewed too')

  await waitFor(async () => (await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE run_id = ANY($1::uuid[]) AND status = 'completed'",
    [ids])).rows[0].n === 6, 'the six runs to complete')
  const { rows: events } = await app.pg.query('SELECT run_id, type, at FROM ops.run_events WHERE run_id = ANY($1::uuid[]) ORDER BY id', [ids])
  for (const { run_id: runId } of answers) {
    const history = events.filter(e => e.run_id === runId)
    t.same(history.map(e => e.type), ['received', 'processing', 'completed'], 'processed once, on its first attempt')
    // Claimed in the ingest statement: its processing event is of the same transaction (claimed later by the claim loop, it is not).
    t.equal(history[1].at.getTime(), history[0].at.getTime(), 'claimed by the statement that stored it')
  }
  // Never more handlers at once than slots, and both slots used.
  t.equal(mostAtOnce(await lines()), 2, 'at most WORKER_CONCURRENCY handlers at once, and that many')
})

t.test('a claim statement in flight: ingest still claims new runs, which start when the claim has answered', async t => {
  const lines = await effectsFile(t)
  const databaseUrl = await freshDatabase(t)
  const providersDir = await jobsProviderDir(t)
  const { app: gateway } = await build(t, { DATABASE_URL: databaseUrl, ROLE: 'all', PROVIDERS_DIR: providersDir, JOBS_KEY, WORKER_POLL_MS: '60000' })
  const { app: ingestOnly } = await build(t, { DATABASE_URL: databaseUrl, ROLE: 'ingest', PROVIDERS_DIR: providersDir, JOBS_KEY })
  const done = async () => (await lines()).filter(line => line.startsWith('done '))

  // The gateway's next claim statement is held until released (the database is real; only the call waits).
  const pool = gateway.pg.pool
  const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>
  let claimStarted!: () => void
  const started = new Promise<void>(resolve => { claimStarted = resolve })
  let release!: () => void
  const released = new Promise<void>(resolve => { release = resolve })
  ;(pool as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args: unknown[]) => {
    if ((args[0] as { name?: string }).name === 'claim-runs') { claimStarted(); await released }
    return await query(...args)
  }
  t.teardown(() => { release() })

  // A run stored by an ingest-only replica wakes the gateway's worker (NOTIFY): its claim is held.
  const queued = (await deliverJob(ingestOnly, { id: `ok-${randomUUID()}`, type: 'ok' })).json()
  await started
  const fresh = (await deliverJob(gateway, { id: `ok-${randomUUID()}`, type: 'ok' })).json()
  t.equal(fresh.status, 'accepted')
  const { rows: history } = await gateway.pg.query('SELECT type, at FROM ops.run_events WHERE run_id = $1 ORDER BY id', [fresh.run_id])
  t.same(history.map(e => e.type), ['received', 'processing'], 'stored claimed while the claim statement was in flight')
  t.equal(history[1].at.getTime(), history[0].at.getTime(), 'by the statement that stored it')
  await new Promise(resolve => setTimeout(resolve, 200))
  t.same(await done(), [], 'not started in a slot the claim may fill')

  release()
  await waitFor(async () => (await done()).length === 2, 'both runs to be processed')
  t.same((await done()).sort(), [`done ${queued.run_id}`, `done ${fresh.run_id}`].sort(), 'each once')
})

t.test('a backlog: one batch claimed ahead of the slots, leased while it waits, each run processed once', async t => {
  const lines = await effectsFile(t)
  const { ids, worker: startWorker } = await slowBacklog(t, 5, 1200)
  // Two slots and a 300 ms lease (renewed every 100 ms): the runs claimed ahead wait longer than that.
  const worker = await startWorker({ WORKER_LEASE_MS: '300' })
  const held = async () => (await worker.pg.query(
    "SELECT count(*)::int AS n FROM ops.runs WHERE status = 'processing' AND locked_by IS NOT NULL AND locked_until > now()")).rows[0].n
  await waitFor(async () => (await lines()).length === 2, 'the first two runs to start')
  await waitFor(async () => await held() === 4, 'two more runs claimed ahead while the first two run')
  await new Promise(resolve => setTimeout(resolve, 400))
  t.equal(await held(), 4, 'the two claimed ahead keep a live lease while they wait; no more are claimed')
  t.equal((await lines()).length, 2, 'they wait for a slot: still two handlers started')

  await waitFor(async () => (await worker.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE status = 'completed'")).rows[0].n === 5, 'the five runs to complete', 20_000)
  const { rows: [attempts] } = await worker.pg.query('SELECT max(attempts)::int AS max FROM ops.runs')
  t.equal(attempts.max, 1, 'none taken again: the leases of the runs waiting were renewed')
  t.equal(mostAtOnce(await lines()), 2, 'never more handlers at once than slots')
  const started = (await lines()).filter(line => line.startsWith('start ')).map(line => line.slice(6))
  t.same(started.sort(), ids.slice().sort(), 'each run started once')
})

t.test('runs claimed ahead are handed back at shutdown, never started', async t => {
  const lines = await effectsFile(t)
  const { ingestOnly, worker: startWorker } = await slowBacklog(t, 6, 30_000)
  const worker = await startWorker({ SHUTDOWN_TIMEOUT_MS: '400' })
  const status = async () => Object.fromEntries((await ingestOnly.pg.query('SELECT status, count(*)::int AS n FROM ops.runs GROUP BY 1')).rows.map(r => [r.status, r.n]))
  await waitFor(async () => (await status()).processing === 4, 'two runs started and two claimed ahead')
  await worker.close()
  t.same(await status(), { retrying: 4, received: 2 }, 'the four held are back in the queue at once; the two never claimed untouched')
  t.equal((await lines()).filter(line => line.startsWith('start ')).length, 2, 'the two claimed ahead were never started')
  const { rows: [handedBack] } = await ingestOnly.pg.query("SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'retrying' AND data->>'error' = 'handed back: the worker shut down'")
  t.equal(handedBack.n, 4, 'each with its hand-back event')
})
