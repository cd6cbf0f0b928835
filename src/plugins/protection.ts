import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { OverloadedError, RETRY_AFTER_SECONDS } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Counts one authentication failure of the request's client. Past AUTH_FAILURE_LIMIT in
     * AUTH_FAILURE_WINDOW_MS it answers the seconds to wait: the refusal is then a 429 and is not
     * audited, so that a forged flood cannot fill the audit table. Valid deliveries are never limited.
     */
    countAuthFailure: (request: FastifyRequest) => Promise<number | undefined>
  }
  interface FastifyContextConfig {
    /** Health, readiness and metrics answer even when the gateway sheds load. */
    pressureExempt?: boolean
  }
}

/**
 * Load shedding: when the event loop lags past UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS (or the heap
 * passes UNDER_PRESSURE_MAX_HEAP_BYTES), deliveries are answered 503 + Retry-After at once (the
 * sender retries) instead of timing out. The ingest queue has its own bound (INGEST_MAX_PENDING,
 * plugins/ingest.ts).
 */
export default fp(async function protection (fastify) {
  const { config } = fastify
  await fastify.register(underPressure, {
    maxEventLoopDelay: config.protection.maxEventLoopDelayMs,
    maxHeapUsedBytes: config.protection.maxHeapBytes,
    retryAfter: RETRY_AFTER_SECONDS,
    // A rejection goes to the error handler: 503 + Retry-After, like every "nothing was taken".
    pressureHandler: async (request, _reply, type) => {
      if (request.routeOptions.config.pressureExempt === true) return
      fastify.metrics.shed.inc({ cause: type })
      throw new OverloadedError(type)
    }
  })

  await fastify.register(rateLimit, { global: false })
  const countFailure = fastify.createRateLimit({
    max: config.protection.authFailureLimit,
    timeWindow: config.protection.authFailureWindowMs,
    keyGenerator: request => request.ip
  })
  fastify.decorate('countAuthFailure', async function countAuthFailure (request: FastifyRequest) {
    if (config.protection.authFailureLimit === 0) return undefined
    const limit = await countFailure(request)
    return !limit.isAllowed && limit.isExceeded ? limit.ttlInSeconds : undefined
  })
}, { name: 'protection', dependencies: ['metrics'] })
