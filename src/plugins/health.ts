import fp from 'fastify-plugin'
import { RETRY_AFTER_SECONDS } from '../errors.js'

/** `/healthz`: the process answers. `/readyz`: it can reach its database (migrations ran at boot). */
export default fp(async function health (fastify) {
  fastify.get('/healthz', async () => ({ status: 'ok' }))

  fastify.get('/readyz', async (request, reply) => {
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
