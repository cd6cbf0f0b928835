import { spawn, type ChildProcess } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, freshDatabase, tempDir, withClient } from './helper.js'
import { deliverJob, jobsProviderDir, waitFor, JOBS_KEY } from './jobs.js'

/**
 * Worker processes (`node dist/server.js worker`) on one database: killed with SIGKILL mid-run,
 * and two of them sharing 1,000 runs. Side effects are lines in EFFECTS_FILE, counted afterwards.
 */
const serverJs = join(import.meta.dirname, '..', 'dist', 'server.js')

function startWorker (t: { teardown: (fn: () => void) => void }, env: Record<string, string>, args = ['worker']): { child: ChildProcess, exit: Promise<number | null>, output: () => string } {
  const child = spawn(process.execPath, [serverJs, ...args], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', JOBS_KEY, WEBHOOK_PROVIDERS: 'jobs', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout!.on('data', chunk => { output += chunk })
  child.stderr!.on('data', chunk => { output += chunk })
  const exit = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, exit, output: () => output }
}

const lines = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(line => line !== '')

/** A database, the jobs provider, an effects file, a short lease, and an ingest-only app to look with. */
async function leasedSetup (t: Parameters<typeof freshDatabase>[0] & Parameters<typeof build>[0]) {
  const databaseUrl = await freshDatabase(t)
  const providersDir = await jobsProviderDir(t)
  const effects = join(await tempDir(t), 'effects.log')
  const env = { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, EFFECTS_FILE: effects, WORKER_LEASE_MS: '1500', WORKER_POLL_MS: '100', DATA_DIR: await tempDir(t) }
  const { app } = await build(t, { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, JOBS_KEY, ROLE: 'ingest' })
  return { app, effects, env }
}

t.test('kill -9 of a worker mid-run: the lease expires, another worker takes the run, it completes exactly once', async t => {
  const { app, effects, env } = await leasedSetup(t)

  const first = startWorker(t, env)
  const delivery = (await deliverJob(app, { id: `slow-${randomUUID()}`, type: 'slow', ms: 2500 })).json()
  await waitFor(async () => (await lines(effects)).includes(`start ${delivery.run_id}`), 'the first worker to start the run')
  first.child.kill('SIGKILL')
  t.equal(await first.exit, null, 'the first worker died by SIGKILL')

  const started = Date.now()
  const second = startWorker(t, env)
  const run = await waitFor(async () => {
    const { rows: [row] } = await app.pg.query('SELECT status, attempts FROM ops.runs WHERE run_id = $1', [delivery.run_id])
    return row.status === 'completed' ? row : undefined
  }, 'another worker to complete the run', 20_000)
  const tookOverMs = Date.now() - started
  t.same(run, { status: 'completed', attempts: 2 })
  const effectLines = await lines(effects)
  t.equal(effectLines.filter(line => line === `start ${delivery.run_id}`).length, 2, 'started twice (the first attempt died)')
  t.equal(effectLines.filter(line => line === `done ${delivery.run_id}`).length, 1, 'completed exactly once')
  const { rows: history } = await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [delivery.run_id])
  t.same(history.map(e => e.type), ['received', 'processing', 'processing', 'completed'])
  t.equal(history[2].data.lease_expired, true, 'the second claim took an expired lease')
  t.not(history[1].data.worker, history[2].data.worker, 'by another worker')
  t.comment(`kill -9 → completed by the second worker ${tookOverMs} ms after it started (lease 1500 ms, handler 2500 ms)`)

  second.child.kill('SIGTERM')
  t.equal(await second.exit, 0, 'SIGTERM: the worker exits 0')
})

t.test('a run claimed at ingest: processed by the gateway that stored it; after its kill -9, taken again after the lease', async t => {
  const { app, effects, env } = await leasedSetup(t)
  const gateway = startWorker(t, { ...env, ROLE: 'all' }, [])
  const origin = await waitFor(async () => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(gateway.output())?.[1], 'the gateway to listen')
  const send = async (event: Record<string, unknown>) => await (await fetch(`${origin}/webhooks/jobs`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-test-key': JOBS_KEY }, body: JSON.stringify(event)
  })).json() as { status: string, run_id: string }

  // A quick run: claimed by the statement that stored it (one 'processing' event, attempt 1, this gateway's worker).
  const quick = await send({ id: `ok-${randomUUID()}`, type: 'ok' })
  t.equal(quick.status, 'accepted')
  await waitFor(async () => (await app.pg.query("SELECT 1 FROM ops.runs WHERE run_id = $1 AND status = 'completed'", [quick.run_id])).rowCount === 1, 'the quick run to complete')
  const { rows: quickHistory } = await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [quick.run_id])
  t.same(quickHistory.map(e => e.type), ['received', 'processing', 'completed'])
  t.equal(quickHistory[1].data.attempt, 1)
  t.equal(quickHistory[1].data.worker, quickHistory[2].data.worker, 'finished by the worker it was claimed for')

  // A slow run: the gateway dies while its handler runs; the lease it was stored with expires.
  const slow = await send({ id: `slow-${randomUUID()}`, type: 'slow', ms: 2500 })
  const { rows: [stored] } = await app.pg.query('SELECT status, attempts, locked_by, locked_until > now() AS leased FROM ops.runs WHERE run_id = $1', [slow.run_id])
  t.match(stored, { status: 'processing', attempts: 1, leased: true }, 'committed already claimed, with a lease')
  t.equal(stored.locked_by, quickHistory[1].data.worker)
  await waitFor(async () => (await lines(effects)).includes(`start ${slow.run_id}`), 'the gateway to start the slow run')
  gateway.child.kill('SIGKILL')
  t.equal(await gateway.exit, null, 'the gateway died by SIGKILL')

  const worker = startWorker(t, env)
  await waitFor(async () => (await app.pg.query("SELECT 1 FROM ops.runs WHERE run_id = $1 AND status = 'completed'", [slow.run_id])).rowCount === 1, 'another worker to complete the slow run', 20_000)
  const effectLines = await lines(effects)
  t.equal(effectLines.filter(line => line === `start ${slow.run_id}`).length, 2, 'started twice (the first attempt died)')
  t.equal(effectLines.filter(line => line === `done ${slow.run_id}`).length, 1, 'completed exactly once')
  const { rows: history } = await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [slow.run_id])
  t.same(history.map(e => e.type), ['received', 'processing', 'processing', 'completed'])
  t.equal(history[2].data.lease_expired, true, 'the second claim took the expired lease')
  worker.child.kill('SIGTERM')
  t.equal(await worker.exit, 0)
})

t.test('two worker processes on one database process 1,000 runs, none twice', async t => {
  const databaseUrl = await freshDatabase(t)
  const providersDir = await jobsProviderDir(t)
  const effects = join(await tempDir(t), 'effects.log')
  await writeFile(effects, '')
  const { app } = await build(t, { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, JOBS_KEY, ROLE: 'ingest' })
  const env = { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, EFFECTS_FILE: effects, WORKER_CONCURRENCY: '8', WORKER_POLL_MS: '50', DATA_DIR: await tempDir(t) }
  const workers = [startWorker(t, env), startWorker(t, env)]
  // The runs arrive once both workers listen: a worker that boots first would otherwise drain them alone.
  await waitFor(async () => workers.every(w => w.output().includes('worker started')), 'both workers to start')
  const started = Date.now()
  await withClient(databaseUrl, async client => {
    await client.query(`
      WITH stored AS (
        INSERT INTO ops.runs (provider, idempotency_key, event_type, payload, body_sha256)
        SELECT 'jobs', 'bulk-' || i, 'ok', jsonb_build_object('id', 'bulk-' || i, 'type', 'ok'), sha256(('bulk-' || i)::bytea)
        FROM generate_series(1, 1000) AS i
        RETURNING 1
      )
      SELECT pg_notify('hookgate_runs', '') FROM (SELECT count(*) FROM stored) AS done`)
  })
  await waitFor(async () => {
    const { rows: [row] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE status = 'completed'")
    return row.n === 1000
  }, '1,000 runs to complete', 60_000)
  const elapsed = Date.now() - started

  const effectLines = await lines(effects)
  const runIds = new Set(effectLines.map(line => line.split(' ')[1]))
  t.equal(effectLines.length, 1000, 'the handler ran 1,000 times')
  t.equal(runIds.size, 1000, 'once per run: none twice')
  const { rows: perWorker } = await app.pg.query(
    "SELECT data->>'worker' AS worker, count(*)::int AS n FROM ops.run_events WHERE type = 'completed' GROUP BY 1 ORDER BY 1")
  t.equal(perWorker.length, 2, 'both workers took part')
  t.ok(perWorker.every(w => w.n > 50), `split ${perWorker.map(w => w.n).join(' / ')}`)
  const { rows: [attempts] } = await app.pg.query('SELECT max(attempts)::int AS max FROM ops.runs')
  t.equal(attempts.max, 1, 'no run was claimed twice')
  t.comment(`two workers × concurrency 8: 1,000 runs in ${elapsed} ms (${Math.round(1000 / (elapsed / 1000))} runs/s), split ${perWorker.map(w => w.n).join(' / ')}`)

  for (const worker of workers) worker.child.kill('SIGTERM')
  t.same(await Promise.all(workers.map(async w => await w.exit)), [0, 0], 'both exit 0')
})

t.test('SIGTERM while a handler runs: the worker waits its share of the budget, hands the run back, exits 0', async t => {
  const databaseUrl = await freshDatabase(t)
  const providersDir = await jobsProviderDir(t)
  const effects = join(await tempDir(t), 'effects.log')
  const { app } = await build(t, { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, JOBS_KEY, ROLE: 'ingest' })
  const worker = startWorker(t, { DATABASE_URL: databaseUrl, PROVIDERS_DIR: providersDir, EFFECTS_FILE: effects, SHUTDOWN_TIMEOUT_MS: '1000', DATA_DIR: await tempDir(t) })
  const delivery = (await deliverJob(app, { id: `long-${randomUUID()}`, type: 'slow', ms: 30000 })).json()
  await waitFor(async () => (await lines(effects)).includes(`start ${delivery.run_id}`), 'the worker to start the run')
  worker.child.kill('SIGTERM')
  t.equal(await worker.exit, 0, 'exit 0')
  const { rows: [run] } = await app.pg.query('SELECT status, locked_by FROM ops.runs WHERE run_id = $1', [delivery.run_id])
  t.same(run, { status: 'retrying', locked_by: null }, 'back in the queue at once, no lease to wait for')
  const { rows: [last] } = await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id DESC LIMIT 1', [delivery.run_id])
  t.match(last, { type: 'retrying', data: { error: 'handed back: the worker shut down' } })
})
