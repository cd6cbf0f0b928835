import fp from 'fastify-plugin'

/**
 * One pino line per delivery, written when the answer has gone out: provider, event id, type,
 * run id, outcome (accepted, duplicate, rejected + reason, unavailable), status and milliseconds.
 * Never a body, a signature or a secret. The same facts feed the delivery metrics (plugins/metrics.ts).
 */
export default fp(async function deliveryLog (fastify) {
  fastify.addHook('onResponse', async function logDelivery (request, reply) {
    const delivery = request.delivery
    if (delivery !== null) {
      const { metrics } = fastify
      metrics.deliveries.inc({ provider: delivery.provider, outcome: delivery.outcome })
      metrics.ingestSeconds.observe({ provider: delivery.provider, outcome: delivery.outcome }, reply.elapsedTime / 1000)
      if (delivery.outcome === 'rejected') metrics.rejections.inc({ provider: delivery.provider, reason: delivery.reason ?? 'unknown' })
      request.log.info({
        provider: delivery.provider,
        event_id: delivery.eventId,
        event_type: delivery.eventType ?? undefined,
        run_id: delivery.runId,
        outcome: delivery.outcome,
        reason: delivery.reason,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        client_ip: request.ip
      }, 'delivery')
    } else if (reply.statusCode >= 400) {
      request.log.info({
        method: request.method,
        path: request.url.split('?')[0].slice(0, 200),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 100) / 100,
        client_ip: request.ip
      }, 'request refused')
    }
  })
}, { name: 'delivery-log', dependencies: ['delivery-outcome', 'metrics'] })
