import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import rateLimit from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'
import { OverloadedError, RETRY_AFTER_SECONDS } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Counts one refusal (401, 400, 413, 415... on a provider route; a payload conflict) of the
     * request's client. Past AUTH_FAILURE_LIMIT in AUTH_FAILURE_WINDOW_MS it answers the seconds to
     * wait: the client is then limited (429 + Retry-After) until its window ends, and its refusals
     * are audited as one row per client, reason and minute, so a flood cannot fill the disk.
     */
    countRefusal: (request: FastifyRequest) => Promise<number | undefined>
    /** Seconds until the request's client may be heard again, or undefined: checked before its body is read. */
    refusalLimit: (request: FastifyRequest) => Promise<number | undefined>
    /**
     * The same for operators (a failed admin API or console sign-in), in a bucket of its own
     * (ADMIN_SIGN_IN_LIMIT): forged deliveries from an operator's address (a NAT, an office) never
     * lock the operator out, and a guesser of the token is limited however few forgeries it sends.
     */
    countSignInFailure: (request: FastifyRequest) => Promise<number | undefined>
    signInLimit: (request: FastifyRequest) => Promise<number | undefined>
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
    keyGenerator: request => clientKey(request.ip)
  })
  const countSignIn = fastify.createRateLimit({
    max: config.protection.signInLimit,
    timeWindow: config.protection.authFailureWindowMs,
    keyGenerator: request => `sign-in ${clientKey(request.ip)}`
  })
  /** Counts one (or, with `increment: false`, reads): the seconds the client must wait, or undefined. */
  const limiter = (limit: typeof countFailure, max: number, increment: boolean) => async (request: FastifyRequest) => {
    if (max === 0) return undefined
    const state = await limit(request, { increment })
    return !state.isAllowed && state.isExceeded ? state.ttlInSeconds : undefined
  }
  fastify.decorate('countRefusal', limiter(countFailure, config.protection.authFailureLimit, true))
  // The same counter, read without counting: a limited client is refused before its body is read.
  fastify.decorate('refusalLimit', limiter(countFailure, config.protection.authFailureLimit, false))
  fastify.decorate('countSignInFailure', limiter(countSignIn, config.protection.signInLimit, true))
  fastify.decorate('signInLimit', limiter(countSignIn, config.protection.signInLimit, false))
}, { name: 'protection', dependencies: ['metrics'] })

/**
 * Who a client is, for limits and aggregated audits: an IPv4 address as it is (also when written as
 * IPv4-mapped IPv6), an IPv6 address by its /64, the block one subscriber gets: counting each
 * address alone would let one host rotate through 2^64 of them.
 */
export function clientKey (ip: string): string {
  if (!ip.includes(':')) return ip
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip)
  if (mapped !== null) return mapped[1]
  const address = ip.split('%')[0].toLowerCase()
  const [head, tail] = address.split('::')
  const groups = head === '' ? [] : head.split(':')
  if (tail !== undefined) {
    const rest = tail === '' ? [] : tail.split(':')
    groups.push(...new Array<string>(Math.max(0, 8 - groups.length - rest.length)).fill('0'), ...rest)
  }
  return `${groups.slice(0, 4).map(group => group.replace(/^0+(?=.)/, '')).join(':')}::/64`
}
