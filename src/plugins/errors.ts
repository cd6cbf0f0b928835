import fp from 'fastify-plugin'
import { HttpError, RETRY_AFTER_SECONDS, errorName } from '../errors.js'

/**
 * One shape for every error answer: `{ error, reason?, message? }`. On a provider route a client
 * error (body too large, wrong media type...) is a refused delivery and audited like one; a
 * database failure is 503 + Retry-After, never a 2xx.
 */
export default fp(async function errors (fastify) {
  fastify.setErrorHandler(async function (error: Error & { statusCode?: number, code?: string }, request, reply) {
    const statusCode = error.statusCode ?? 500
    // A delivery answered 5xx was not stored: its outcome, unless its plugin set one already.
    const provider = request.routeOptions.config.provider?.definition.name
    if (statusCode >= 500 && provider !== undefined) request.delivery ??= { provider, outcome: 'unavailable' }
    if (statusCode === 503) {
      request.log.warn({ err: { message: error.message, cause: (error.cause as Error | undefined)?.message } }, 'answering 503: nothing committed')
      return await reply.code(503).header('retry-after', String(RETRY_AFTER_SECONDS))
        .send({ error: 'service_unavailable', reason: error instanceof HttpError ? error.code : undefined, message: error.message })
    }
    if (statusCode >= 400 && statusCode < 500) {
      const reason = error instanceof HttpError ? error.code : fastifyReason(error.code)
      if (provider !== undefined) return await this.rejectDelivery(request, reply, statusCode, reason)
      return await reply.code(statusCode).send({ error: errorName(statusCode), reason, message: error.message })
    }
    request.log.error({ err: error }, 'unexpected error')
    return await reply.code(500).send({ error: 'internal_server_error' })
  })

  fastify.setNotFoundHandler(async function (request, reply) {
    return await reply.code(404).send({ error: 'not_found', message: `no route for ${request.method} ${request.url.split('?')[0]}` })
  })
}, { name: 'errors', dependencies: ['delivery-outcome'] })

/** FST_ERR_CTP_BODY_TOO_LARGE → body_too_large */
function fastifyReason (code: string | undefined): string {
  return (code ?? 'bad_request').replace(/^FST_ERR_(CTP_)?/, '').toLowerCase()
}
