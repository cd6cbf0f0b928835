import { createServer, type Server } from 'node:http'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Pool } from 'pg'

/**
 * Prometheus metrics (prom-client), one registry per gateway. Deliveries and rejections are
 * counted where their log line is written (plugins/delivery-log.ts), runs where the worker records
 * them; queue depth, oldest pending age and pool usage are read at scrape time. Plugins add their
 * own gauges to `registry` (ingest: its pending deliveries) and their pools with `watchPool`. Served on
 * `GET /metrics` on METRICS_PORT alone, so that the public listener does not expose them; on the
 * public port outside production, or in production with METRICS_PUBLIC=true.
 */
export interface Metrics {
  registry: Registry
  deliveries: Counter<'provider' | 'outcome'>
  rejections: Counter<'provider' | 'reason'>
  ingestSeconds: Histogram<'provider' | 'outcome'>
  runs: Counter<'provider' | 'outcome'>
  runSeconds: Histogram<'provider' | 'outcome'>
  shed: Counter<'cause'>
  /** Adds a pool to `hookgate_db_pool_connections` under this name (the main pool is `main`). */
  watchPool: (name: string, pool: Pool) => void
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
    /** The METRICS_PORT listener, when there is one. */
    metricsServer: Server | null
  }
}

const PENDING = `SELECT count(*)::int AS depth, coalesce(extract(epoch FROM now() - min(coalesce(next_attempt_at, received_at))), 0)::float8 AS oldest
FROM ops.runs WHERE status IN ('received', 'retrying')`

export default fp(async function metrics (fastify) {
  const { config } = fastify
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'hookgate_' })
  const pool = fastify.pg.pool

  const metrics: Metrics = {
    registry,
    deliveries: new Counter({ name: 'hookgate_deliveries_total', help: 'Deliveries answered, by provider and outcome (accepted, duplicate, conflict, rejected, unavailable, handshake).', labelNames: ['provider', 'outcome'], registers: [registry] }),
    rejections: new Counter({ name: 'hookgate_rejections_total', help: 'Deliveries refused, by provider and reason.', labelNames: ['provider', 'reason'], registers: [registry] }),
    ingestSeconds: new Histogram({
      name: 'hookgate_ingest_duration_seconds',
      help: 'From request to answer, by provider and outcome.',
      labelNames: ['provider', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry]
    }),
    runs: new Counter({ name: 'hookgate_runs_processed_total', help: 'Run attempts finished by the worker, by provider and outcome.', labelNames: ['provider', 'outcome'], registers: [registry] }),
    runSeconds: new Histogram({
      name: 'hookgate_run_duration_seconds',
      help: 'Time to process one run attempt, by provider and outcome.',
      labelNames: ['provider', 'outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry]
    }),
    shed: new Counter({ name: 'hookgate_shed_total', help: 'Requests answered 503 or 429 to protect the gateway, by cause.', labelNames: ['cause'], registers: [registry] }),
    watchPool: (name, each) => { pools.set(name, each) }
  }
  const pools = new Map<string, Pool>([['main', pool]])

  // One query per scrape, shared by the gauges below (the registry collects them side by side).
  let scrape: { at: number, figures: Promise<{ depth: number, oldest: number, up: number }> } | undefined
  const pending = async (): Promise<{ depth: number, oldest: number, up: number }> => {
    if (scrape === undefined || Date.now() - scrape.at > 1000) {
      const previous = scrape?.figures
      scrape = {
        at: Date.now(),
        figures: pool.query<{ depth: number, oldest: number }>({ name: 'metrics-pending', text: PENDING })
          .then(({ rows: [row] }) => ({ ...row, up: 1 }))
          // The database is down: the last figures stand, and hookgate_database_up says so.
          .catch(async () => ({ ...(await previous ?? { depth: 0, oldest: 0 }), up: 0 }))
      }
    }
    return await scrape.figures
  }
  registry.registerMetric(new Gauge({ name: 'hookgate_database_up', help: '1 when the last scrape could query PostgreSQL.', registers: [], async collect () { this.set((await pending()).up) } }))
  registry.registerMetric(new Gauge({ name: 'hookgate_queue_depth', help: 'Runs waiting to be processed (received or retrying).', registers: [], async collect () { this.set((await pending()).depth) } }))
  registry.registerMetric(new Gauge({ name: 'hookgate_queue_oldest_seconds', help: 'How long the oldest waiting run has been due.', registers: [], async collect () { this.set((await pending()).oldest) } }))
  registry.registerMetric(new Gauge({
    name: 'hookgate_db_pool_connections',
    help: 'PostgreSQL connections by pool (main, ingest, outcomes, read) and state (total, idle, waiting clients).',
    labelNames: ['pool', 'state'],
    registers: [],
    collect () {
      for (const [name, each] of pools) {
        this.set({ pool: name, state: 'total' }, each.totalCount)
        this.set({ pool: name, state: 'idle' }, each.idleCount)
        this.set({ pool: name, state: 'waiting' }, each.waitingCount)
      }
    }
  }))
  registry.registerMetric(new Gauge({ name: 'hookgate_db_pool_max', help: 'DB_POOL_MAX.', registers: [], collect () { this.set(config.dbPoolMax) } }))
  fastify.decorate('metrics', metrics)

  const answer = async (): Promise<{ type: string, body: string }> => ({ type: registry.contentType, body: await registry.metrics() })
  fastify.decorate('metricsServer', null)
  if (config.metricsPort === undefined) {
    if (!config.metricsPublic) {
      fastify.log.warn('metrics are not served: set METRICS_PORT (a port of their own) or METRICS_PUBLIC=true')
      return
    }
    fastify.get('/metrics', { config: { pressureExempt: true } }, async (_request, reply) => {
      const { type, body } = await answer()
      return await reply.type(type).send(body)
    })
    return
  }
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404).end()
      return
    }
    answer().then(({ type, body }) => response.writeHead(200, { 'content-type': type }).end(body), () => response.writeHead(500).end())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.metricsPort, config.host, () => { resolve() })
  })
  fastify.metricsServer = server
  fastify.log.info({ port: (server.address() as { port: number }).port }, 'metrics listening')
  fastify.addHook('onClose', async () => { await new Promise(resolve => server.close(resolve)) })
}, { name: 'metrics', dependencies: ['database'] })
