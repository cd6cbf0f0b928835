import fp from 'fastify-plugin'
import { Gauge } from 'prom-client'
import { ensurePartitions, maintain } from '../retention.js'

/**
 * Retention on a timer (src/retention.ts): every replica tries every RETENTION_INTERVAL_MS, one does
 * the pass, by the database's clock; a replica whose clock is off by more than CLOCK_SKEW_LIMIT_MS
 * skips it, logs an error and shows the skew (hookgate_clock_skew_seconds). At boot today's
 * partitions and the days ahead are made before the first delivery; the first full pass follows in
 * the background, so a long drop never delays readiness.
 */
export default fp(async function retention (fastify) {
  const settings = fastify.config.retention
  const client = await fastify.pg.connect()
  try {
    await ensurePartitions(client)
  } finally {
    client.release()
  }

  // When this replica last finished a pass: the replicas take turns, so the newest of them all is the
  // figure to watch (deploy/alerts.yml: HookgateRetentionStalled).
  const lastPass = new Gauge({ name: 'hookgate_retention_last_pass_timestamp_seconds', help: 'When this replica last finished a retention pass (0: never).', registers: [] })
  fastify.metrics.registry.registerMetric(lastPass)

  // This replica's clock minus the database's: retention skips its pass past CLOCK_SKEW_LIMIT_MS
  // (deploy/alerts.yml: HookgateClockSkew).
  const skew = new Gauge({ name: 'hookgate_clock_skew_seconds', help: "This replica's clock minus the database's, read at each retention pass.", registers: [] })
  fastify.metrics.registry.registerMetric(skew)

  let running: Promise<void> | undefined
  const pass = (): void => {
    if (running !== undefined) return
    running = maintain(fastify.pg.pool, settings, { maxSkewMs: settings.maxClockSkewMs })
      .then(report => {
        skew.set(report.clockSkewMs / 1000)
        if (report.clockSkewed) {
          fastify.log.error({ clock_skew_ms: report.clockSkewMs, limit_ms: settings.maxClockSkewMs }, "retention pass skipped: this replica's clock differs from the database's")
          return
        }
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
