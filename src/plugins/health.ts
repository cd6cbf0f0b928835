import fp from 'fastify-plugin'
import { RETRY_AFTER_SECONDS } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set on SIGTERM: /readyz answers 503 so the balancer stops sending, while deliveries are still served. */
    draining: boolean
  }
}

/** `/healthz`: the process answers. `/readyz`: not draining, and the database answers (migrations ran at boot). */
export default fp(async function health (fastify) {
  fastify.decorate('draining', false)
  fastify.get('/healthz', { config: { pressureExempt: true } }, async () => ({ status: 'ok' }))

  fastify.get('/readyz', { config: { pressureExempt: true } }, async (request, reply) => {
    if (fastify.draining) {
      return await reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS)).send({ status: 'draining' })
    }
    try {
      await fastify.pg.query('SELECT 1')
      return { status: 'ready' }
    } catch (err) {
      request.log.warn({ err: { message: (err as Error).message } }, 'not ready: database unreachable')
      return await reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS))
        .send({ status: 'unavailable', reason: 'database_unreachable' })
    }
  })
}, { name: 'health', dependencies: ['database'] })
