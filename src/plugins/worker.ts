import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import fp from 'fastify-plugin'
import pg from 'pg'
import { loadDestinations } from '../destinations.js'
import type { Outcome } from '../outcomes.js'
import { dispatch, toFinish } from '../processing.js'
import {
  RUNS_CHANNEL, claimRuns, failExhaustedLeases, finishRuns, releaseRuns, renewLeases, type ClaimedRun, type Finished
} from '../queue.js'
import { createBatcher } from '../batcher.js'
import { registerPool } from './database.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Whether a run of this provider and type would be processed for nothing (no handler, no matching
     * destination), so that ingest stores it as completed. Only a replica that processes (ROLE=all)
     * knows its destinations: on ROLE=ingest it is always false, and the workers decide.
     */
    nothingToDo: (provider: string, eventType: string | null) => boolean
    /**
     * This process's worker, for the runs that ingest claims for it in the statement that stores
     * them (ROLE=all); null where this process does not process.
     */
    localWorker: LocalWorker | null
  }
}

/**
 * Claiming at ingest: a new run that this process will process anyway is stored already claimed
 * (status `processing`, this worker's lease and its `processing` event, in the ingest statement) and
 * handed over in memory after the commit: no claim statement, no NOTIFY, no wait. A run handed over
 * is held exactly like a claimed one (heartbeat, fenced finish, lease taken again if the process dies).
 */
export interface LocalWorker {
  /** The lease owner written as `locked_by`. */
  readonly id: string
  readonly leaseMs: number
  /**
   * Whether a new run is to be stored claimed for this worker: a slot is free and there is no backlog
   * (a backlog is taken in order by the claim loop; runs stored meanwhile wait their turn as
   * `received`). Nothing is held while the delivery waits for its commit.
   */
  canTake: () => boolean
  /**
   * The run stored claimed for this worker, after the commit: processed now, or, if the claim loop
   * took the free slots meanwhile, as soon as one frees (its lease renewed while it waits).
   */
  take: (run: ClaimedRun) => void
}

/** At most this many outcomes recorded by one statement. */
const FINISH_BATCH = 500

/**
 * The worker: takes runs from the queue (ops.runs) and processes them after the sender has had its
 * 2xx. Runs inside the gateway (ROLE=all) or alone (ROLE=worker, `hookgate worker`); any number of
 * them share one database. A new run stored while it has a free slot comes claimed from the ingest
 * statement (LocalWorker); the others are claimed in batches, woken by NOTIFY on a new run, by a
 * finished job while a backlog remains, and by a poll timer for retries that come due and leases that expire.
 *
 * Processing a run (what it does, and what its outcome makes of it) is src/processing.ts.
 */
export default fp(async function worker (fastify) {
  const { config, log } = fastify
  if (config.role === 'ingest') {
    fastify.decorate('nothingToDo', () => false)
    fastify.decorate('localWorker', null)
    return
  }
  const { pool } = fastify.pg
  // The batches of outcomes get a connection of their own, where their statement is planned once
  // (registerPool): on the main pool PostgreSQL planned it again for every batch, 0.5 ms with a month
  // of day partitions. The claim stays with PostgreSQL's choice: its generic plan drained a backlog
  // at two thirds of the rate (docs/benchmarks.md).
  const outcomes = await registerPool(fastify, { name: 'outcomes', max: 1, applicationName: 'hookgate-outcomes', genericPlans: true })
  fastify.metrics.watchPool('outcomes', outcomes)
  const id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`
  const destinations = await loadDestinations(config.destinations, config.env)
  const { concurrency, leaseMs, pollMs, lingerMs, maxAttempts } = config.worker
  fastify.decorate('nothingToDo', (provider: string, eventType: string | null) => {
    const handlers = fastify.providers.definitions.get(provider)?.handlers
    return handlers?.[eventType ?? ''] === undefined && handlers?.['*'] === undefined &&
      !destinations.some(destination => destination.matches(provider, eventType))
  })

  /** Every job until its outcome is recorded (shutdown waits for them). */
  const active = new Set<Promise<void>>()
  /** Slots: runs whose handler or forwarding is under way (at most `concurrency`). */
  let busy = 0
  /**
   * The slots the claim statement in flight may fill (those free when it was sent), which runs
   * handed over meanwhile do not start in (they wait for its answer). Ingest still claims meanwhile.
   */
  let claiming = 0
  /**
   * Runs held for a slot, started in order as slots free: first those the claim loop claimed (ahead of
   * its slots, with a backlog), then those ingest handed over while every slot was busy.
   */
  const claimed: ClaimedRun[] = []
  const handedOver: ClaimedRun[] = []
  const waitingCount = (): number => claimed.length + handedOver.length
  /** The runs this worker holds, renewed together by one heartbeat. */
  const held = new Set<string>()
  // Attempts that end at the same moment are recorded by one statement (group commit, src/batcher.ts).
  const finishes = createBatcher<Finished, boolean>({ maxSize: FINISH_BATCH, concurrency: 1, lingerMs, run: async items => await finishRuns(outcomes, id, items) })
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
    // eslint-disable-next-line no-unmodified-loop-condition -- set by onClose, between two turns of the loop
    while (!stopping) {
      wakeRequested = false
      if (claimRoom() > 0) {
        try {
          // Leases expire after WORKER_LEASE_MS: sweeping once per poll interval is enough, not on every wake.
          if (Date.now() - lastSweep >= pollMs) {
            lastSweep = Date.now()
            await failExhaustedLeases(pool, maxAttempts)
          }
          const room = claimRoom()
          if (room > 0) {
            // Runs that ingest hands over while the claim is in flight wait for its answer instead of
            // starting in the slots it may fill.
            claiming = Math.max(0, Math.min(room, freeSlots()))
            const runs = await claimRuns(pool, id, room, leaseMs, maxAttempts).finally(() => { claiming = 0 })
            // Fewer runs than asked for: the queue was empty at that moment, so a job that ends has no
            // reason to claim again (an empty claim per run at moderate rates); NOTIFY or the poll will.
            backlog = runs.length === room
            // Held (their leases renewed) until a slot frees: after the runs claimed before them, before
            // the runs ingest handed over meanwhile.
            for (const run of runs) held.add(run.run_id)
            claimed.push(...runs)
          }
        } catch (err) {
          // Tried again on the next wake or poll, not at once (no claim ahead while the database fails).
          backlog = false
          log.warn({ err: { message: (err as Error).message } }, 'worker could not claim runs; trying again')
        }
        startWaiting()
      }
      await new Promise<void>(resolve => {
        // A backlog with room to claim ahead (the claim came back full, its runs started): claim now.
        if (wakeRequested || stopping || (backlog && claimRoom() > 0)) { resolve(); return }
        const timer = setTimeout(resolve, pollMs)
        wakeWaiting = () => { clearTimeout(timer); resolve() }
      })
      wakeWaiting = undefined
    }
  }

  /**
   * Free slots: WORKER_CONCURRENCY runs processed at once. A run's slot is free again when its
   * handler returns, before its outcome is recorded; more outcomes waiting for their statement than
   * one statement takes hold claims back (the database is behind). Runs waiting for a slot (claimed
   * ahead, or handed over by ingest) have them first.
   */
  function freeSlots (): number {
    return finishes.pending >= FINISH_BATCH ? 0 : concurrency - busy - waitingCount()
  }

  /**
   * How many runs the claim loop may claim now: the free slots; with a backlog (the last claim came
   * back full), once the runs held are down to one batch, that batch's slots and one batch ahead of
   * them. Then the next claim's round trip overlaps the processing of the runs before it instead of
   * alternating with it: draining a backlog, one worker waited for each claim with nothing to do, a
   * third of its time (docs/benchmarks.md, "Two workers"). graphile-worker's local queue claims ahead
   * the same way; here the runs claimed ahead are leased and renewed like the others, handed back at
   * shutdown and taken again after the lease if the process dies.
   */
  function claimRoom (): number {
    if (!backlog) return freeSlots()
    const inHand = busy + waitingCount()
    return finishes.pending >= FINISH_BATCH || inHand > concurrency ? 0 : 2 * concurrency - inHand
  }

  /** A claimed run (its slot already counted in `busy`) is processed, then its outcome recorded. */
  function start (run: ClaimedRun): void {
    const job = processRun(run).finally(() => { active.delete(job); if (backlog) wake() })
    active.add(job)
  }

  /** Slots free: the runs that wait for them, those claimed first (not when shutting down: handed back). */
  function startWaiting (): void {
    if (stopping) return
    while (waitingCount() > 0 && busy + claiming < concurrency) {
      busy++
      start((claimed.shift() ?? handedOver.shift()) as ClaimedRun)
    }
  }

  // No slot is held while a delivery waits for its commit. When one was (reserved at the request),
  // more deliveries in flight than WORKER_CONCURRENCY (a busy gateway: 200 connections) found none
  // free and stored their runs for the claim loop, whose full claims then kept ingest from claiming
  // (the backlog rule) for as long as the load lasted: each such run written once more, by a claim
  // statement, 70 % of them at 200 connections. A slot is taken when the run is handed over; the
  // runs handed over while every slot is busy (at most what was in flight) wait for the next ones.
  fastify.decorate('localWorker', {
    id,
    leaseMs,
    canTake () {
      return !stopping && !backlog && freeSlots() > 0
    },
    take (run: ClaimedRun) {
      held.add(run.run_id)
      handedOver.push(run)
      // After the answer is on its way: a handler's synchronous work does not delay the 2xx.
      setImmediate(startWaiting)
    }
  } satisfies LocalWorker)

  async function processRun (claimed: ClaimedRun): Promise<void> {
    const started = performance.now()
    held.add(claimed.run_id)
    let outcome: Outcome
    try {
      outcome = await dispatch(claimed, fastify.providers.definitions.get(claimed.provider)?.handlers, destinations, log)
    } catch (err) {
      outcome = { outcome: 'retry', reason: (err as Error).message ?? String(err) }
    } finally {
      busy--
      startWaiting()
      if (backlog) wake()
    }
    const ms = Math.round(performance.now() - started)
    const finish = toFinish(claimed, outcome, ms, id, config.worker)
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
    await Promise.all(destinations.map(async destination => await destination.close().catch(() => {})))
  })
}, { name: 'worker', dependencies: ['database', 'providers', 'metrics'] })
