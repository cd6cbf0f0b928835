import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import pg from 'pg'
import { loadDestinations, type Destination } from '../destinations.js'
import { done, worstOf, type Outcome } from '../outcomes.js'
import {
  RUNS_CHANNEL, backoffMs, claimRuns, failExhaustedLeases, finishRuns, releaseRuns, renewLeases, type ClaimedRun, type Finish, type Finished
} from '../queue.js'
import { createBatcher } from '../batcher.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Whether a run of this provider and type would be processed for nothing (no handler, no matching
     * destination), so that ingest stores it as completed. Only a replica that processes (ROLE=all)
     * knows its destinations: on ROLE=ingest it is always false, and the workers decide.
     */
    nothingToDo: (provider: string, eventType: string | null) => boolean
  }
}

/**
 * The worker: takes runs from the queue (ops.runs) and processes them after the sender has had its
 * 2xx. Runs inside the gateway (ROLE=all) or alone (ROLE=worker, `hookgate worker`); any number of
 * them share one database. Woken by NOTIFY on every new run, by a finished job, and by a poll timer
 * for retries that come due and leases that expire.
 *
 * Processing a run: the provider's handler for its event type (or `*`), then every destination
 * whose pattern matches; no handler and no destination: completed as stored.
 */
export default fp(async function worker (fastify) {
  const { config, log } = fastify
  if (config.role === 'ingest') {
    fastify.decorate('nothingToDo', () => false)
    return
  }
  const { pool } = fastify.pg
  const id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  const destinations = await loadDestinations(config.destinations, config.env)
  const { concurrency, leaseMs, pollMs, lingerMs, maxAttempts, retryBaseMs, retryMaxMs } = config.worker
  fastify.decorate('nothingToDo', (provider: string, eventType: string | null) => {
    const handlers = fastify.providers.definitions.get(provider)?.handlers
    return handlers?.[eventType ?? ''] === undefined && handlers?.['*'] === undefined &&
      !destinations.some(destination => destination.matches(provider, eventType))
  })

  const active = new Set<Promise<void>>()
  /** The runs this worker holds, renewed together by one heartbeat. */
  const held = new Set<string>()
  // Attempts that end at the same moment are recorded by one statement (group commit, src/batcher.ts).
  const finishes = createBatcher<Finished, boolean>({ maxSize: 500, concurrency: 1, lingerMs, run: async items => await finishRuns(pool, id, items) })
  let heartbeat: NodeJS.Timeout | undefined
  let stopping = false
  // A wake that comes while the loop is claiming (a job ended, a NOTIFY) is kept for the next wait.
  let wakeRequested = false
  let wakeWaiting: (() => void) | undefined
  const wake = (): void => { wakeRequested = true; wakeWaiting?.() }
  let listener: pg.Client | undefined
  let loop: Promise<void> | undefined
  let lastSweep = 0
  let backlog = false

  async function run (): Promise<void> {
    while (!stopping) {
      wakeRequested = false
      const free = concurrency - active.size
      if (free > 0) {
        try {
          // Leases expire after WORKER_LEASE_MS: sweeping once per poll interval is enough, not on every wake.
          if (Date.now() - lastSweep >= pollMs) {
            lastSweep = Date.now()
            await failExhaustedLeases(pool, maxAttempts)
          }
          const claimed = await claimRuns(pool, id, free, leaseMs, maxAttempts)
          // Fewer runs than free slots: the queue was empty at that moment, so a job that ends has no
          // reason to claim again (an empty claim per run at moderate rates); NOTIFY or the poll will.
          backlog = claimed.length === free
          for (const run of claimed) {
            const job = processRun(run).finally(() => { active.delete(job); if (backlog) wake() })
            active.add(job)
          }
        } catch (err) {
          log.warn({ err: { message: (err as Error).message } }, 'worker could not claim runs; trying again')
        }
      }
      await new Promise<void>(resolve => {
        if (wakeRequested || stopping) { resolve(); return }
        const timer = setTimeout(resolve, pollMs)
        wakeWaiting = () => { clearTimeout(timer); resolve() }
      })
      wakeWaiting = undefined
    }
  }

  async function processRun (claimed: ClaimedRun): Promise<void> {
    const started = performance.now()
    held.add(claimed.run_id)
    let outcome: Outcome
    try {
      outcome = await dispatch(claimed)
    } catch (err) {
      outcome = { outcome: 'retry', reason: (err as Error).message ?? String(err) }
    }
    const ms = Math.round(performance.now() - started)
    const finish = toFinish(claimed, outcome, ms)
    try {
      const recorded = await finishes.push({ ...finish, runId: claimed.run_id }).finally(() => { held.delete(claimed.run_id) })
      log.info({ run_id: claimed.run_id, provider: claimed.provider, event_type: claimed.event_type ?? undefined, attempt: claimed.attempts, outcome: finish.status, ms, error: finish.error, stale: recorded ? undefined : true }, 'run processed')
      fastify.metrics.runs.inc({ provider: claimed.provider, outcome: finish.status })
      fastify.metrics.runSeconds.observe({ provider: claimed.provider, outcome: finish.status }, ms / 1000)
    } catch (err) {
      // Not recorded: the lease expires and the run is taken again (at least once, never lost).
      log.warn({ run_id: claimed.run_id, err: { message: (err as Error).message } }, 'could not record the outcome of a run')
    }
  }

  async function dispatch (claimed: ClaimedRun): Promise<Outcome> {
    const definition = fastify.providers.definitions.get(claimed.provider)
    const handler = definition?.handlers?.[claimed.event_type ?? ''] ?? definition?.handlers?.['*']
    if (handler !== undefined) {
      const outcome = await handler(claimed.payload, {
        runId: claimed.run_id,
        provider: claimed.provider,
        eventType: claimed.event_type,
        attempt: claimed.attempts,
        log: log.child({ run_id: claimed.run_id })
      }) ?? done()
      if (outcome.outcome !== 'done') return outcome
    }
    const targets = destinations.filter((destination: Destination) => destination.matches(claimed.provider, claimed.event_type))
    return worstOf(await Promise.all(targets.map(async destination => await destination.forward(claimed))))
  }

  function toFinish (claimed: ClaimedRun, outcome: Outcome, ms: number): Finish {
    const data = { attempt: claimed.attempts, ms, worker: id }
    switch (outcome.outcome) {
      case 'done': return { status: 'completed', data }
      case 'ignore': return { status: 'ignored', data: { ...data, reason: outcome.reason } }
      case 'failed': return { status: 'failed', error: outcome.reason, data: { ...data, error: outcome.reason } }
      case 'exception': return {
        status: 'exception',
        error: outcome.reason,
        data: { ...data, reason: outcome.reason },
        exception: { reason: outcome.reason, details: outcome.details ?? {} }
      }
      case 'retry': {
        if (claimed.attempts >= maxAttempts) return { status: 'failed', error: outcome.reason, data: { ...data, error: outcome.reason, gave_up: true } }
        const retryInMs = outcome.afterMs ?? backoffMs(claimed.attempts, retryBaseMs, retryMaxMs)
        return { status: 'retrying', retryInMs, error: outcome.reason, data: { ...data, error: outcome.reason, retry_in_ms: retryInMs } }
      }
    }
  }

  /** A dedicated connection LISTENs for new runs; if it drops, polling carries on and it reconnects. */
  async function listen (): Promise<void> {
    if (stopping) return
    const client = new pg.Client({ connectionString: fastify.databaseUrl })
    client.on('error', () => {})
    client.on('end', () => {
      if (listener === client && !stopping) setTimeout(() => { listen().catch(() => {}) }, pollMs)
    })
    // WORKER_LINGER_MS: a new run waits that long for company, so that a moderate rate claims several at once.
    client.on('notification', () => { if (lingerMs === 0) wake(); else setTimeout(() => wake(), lingerMs) })
    try {
      await client.connect()
      await client.query(`LISTEN ${RUNS_CHANNEL}`)
      listener = client
    } catch (err) {
      log.warn({ err: { message: (err as Error).message } }, 'worker cannot LISTEN; polling every WORKER_POLL_MS')
      await client.end().catch(() => {})
      if (!stopping) setTimeout(() => { listen().catch(() => {}) }, pollMs)
    }
  }

  fastify.addHook('onReady', async () => {
    await listen()
    // Every lease this worker holds, renewed a third of a lease before it expires, in one statement.
    heartbeat = setInterval(() => {
      if (held.size === 0) return
      renewLeases(pool, [...held], id, leaseMs).catch((err: Error) => log.warn({ runs: held.size, err: { message: err.message } }, 'could not renew leases'))
    }, Math.max(100, Math.floor(leaseMs / 3)))
    loop = run()
    log.info({ worker: id, concurrency, destinations: destinations.map(d => d.name) }, 'worker started')
  })

  // Stops claiming, lets running jobs finish within the shutdown budget, hands back the rest.
  fastify.addHook('onClose', async () => {
    stopping = true
    wake()
    await loop
    const deadline = new Promise(resolve => setTimeout(resolve, config.shutdownTimeoutMs / 2).unref())
    await Promise.race([Promise.allSettled([...active]), deadline])
    clearInterval(heartbeat)
    await releaseRuns(pool, id).catch((err: Error) => log.warn({ err: { message: err.message } }, 'could not hand back runs'))
    const client = listener
    listener = undefined
    await client?.end().catch(() => {})
  })
}, { name: 'worker', dependencies: ['database', 'providers', 'metrics'] })
