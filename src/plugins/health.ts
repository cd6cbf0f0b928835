import fp from 'fastify-plugin'
import { RETRY_AFTER_SECONDS } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Set on SIGTERM: /readyz answers 503 so the balancer stops sending, while deliveries are still served. */
    draining: boolean
  }
}

/**
 * `/healthz`: the process answers. `/readyz`: not draining, and the database answers (migrations ran at boot).
 * Once the server closes, every answer carries `Connection: close`, so a keep-alive socket whose
 * request was in flight ends with its answer instead of holding the close until its idle timeout
 * (65 s, past SHUTDOWN_TIMEOUT_MS); a request that still arrives on one is a 503 + Retry-After
 * (Fastify's own has no Retry-After: return503OnClosing is off, see app.ts).
 */
export default fp(async function health (fastify) {
  fastify.decorate('draining', false)
  let closing = false
  fastify.addHook('preClose', async () => { closing = true })
  fastify.addHook('onRequest', async (_request, reply) => {
    if (!closing) return
    return await reply.code(503).header('connection', 'close').header('retry-after', String(RETRY_AFTER_SECONDS))
      .send({ error: 'service_unavailable', reason: 'shutting_down' })
  })
  fastify.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close')
  })
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
