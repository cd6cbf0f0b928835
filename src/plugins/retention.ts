import fp from 'fastify-plugin'
import { Gauge } from 'prom-client'
import { ensurePartitions, maintain } from '../retention.js'

/**
 * Retention on a timer (src/retention.ts): every replica tries every RETENTION_INTERVAL_MS, one does
 * the pass. At boot today's partitions and the week ahead are made before the first delivery; the
 * first full pass follows in the background, so a long drop never delays readiness.
 */
export default fp(async function retention (fastify) {
  const settings = fastify.config.retention
  const client = await fastify.pg.connect()
  try {
    await ensurePartitions(client, new Date())
  } finally {
    client.release()
  }

  // When this replica last finished a pass: the replicas take turns, so the newest of them all is the
  // figure to watch (deploy/alerts.yml: HookgateRetentionStalled).
  const lastPass = new Gauge({ name: 'hookgate_retention_last_pass_timestamp_seconds', help: 'When this replica last finished a retention pass (0: never).', registers: [] })
  fastify.metrics.registry.registerMetric(lastPass)

  let running: Promise<void> | undefined
  const pass = (): void => {
    if (running !== undefined) return
    running = maintain(fastify.pg.pool, settings)
      .then(report => {
        if (report.skipped) return
        lastPass.set(Date.now() / 1000)
        const level = report.dropped.length + report.released + report.keysPruned + report.created > 0 ? 'info' : 'debug'
        fastify.log[level]({ retention: report }, 'retention pass')
      })
      .catch((err: Error & { code?: string }) => { fastify.log.error({ err: { message: err.message, code: err.code } }, 'retention pass failed') })
      .finally(() => { running = undefined })
  }
  let timer: NodeJS.Timeout | undefined
  fastify.addHook('onReady', async () => {
    pass()
    timer = setInterval(pass, settings.intervalMs).unref()
  })
  fastify.addHook('onClose', async () => {
    clearInterval(timer)
    await running
  })
}, { name: 'retention', dependencies: ['database', 'metrics'] })
