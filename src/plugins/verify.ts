import fp from 'fastify-plugin'
import { Gauge } from 'prom-client'
import type { FastifyRequest } from 'fastify'
import { HttpError, OverloadedError } from '../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Bytes this delivery holds of the unverified-body budget until its signature is checked. */
    unverifiedBytes: number
  }
}

/** A DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port. */
const VALID_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/

/**
 * THE signature check of every provider route: a root-level preHandler that takes the provider
 * from the route config and runs its pure verifier on the exact bytes received. A refusal is a
 * 401 with a reason code, audited, and the handler never runs.
 */
export default fp(async function verify (fastify) {
  const noBody = Buffer.alloc(0)

  // The budget of unverified bodies (UNVERIFIED_BODY_BUDGET_BYTES): every delivery holds its declared
  // size (or, without a Content-Length, its route's body limit) from its headers until its signature
  // has been checked. Past the budget a delivery is answered 503 + Retry-After before its body is read:
  // forged bodies sent at once (40 of GitHub's 25 MB) cannot take the process's memory, and a
  // delivery alone is always taken, however large.
  const budget = fastify.config.protection.unverifiedBodyBytes
  let held = 0
  fastify.decorateRequest('unverifiedBytes', 0)
  const release = (request: FastifyRequest): void => {
    held -= request.unverifiedBytes
    request.unverifiedBytes = 0
  }
  // Callback hooks (no promise each) on the path of every request; a budget of 0 adds none.
  if (budget > 0) {
    fastify.addHook('onRequest', function reserveUnverified (request, _reply, done) {
      const { config, bodyLimit } = request.routeOptions
      if (config.provider === undefined) return done()
      const limit = bodyLimit ?? fastify.config.bodyLimitBytes
      const declared = Number(request.headers['content-length'] ?? Number.NaN)
      const bytes = Number.isSafeInteger(declared) && declared >= 0 ? Math.min(declared, limit + 1) : limit
      if (held > 0 && held + bytes > budget) {
        request.delivery = { provider: config.provider.definition.name, outcome: 'unavailable', reason: 'unverified_body_budget' }
        fastify.metrics.shed.inc({ cause: 'unverified_body_budget' })
        return done(new OverloadedError('unverified_body_budget'))
      }
      held += bytes
      request.unverifiedBytes = bytes
      done()
    })
    fastify.addHook('onResponse', function releaseUnverified (request, _reply, done) {
      if (request.unverifiedBytes !== 0) release(request)
      done()
    })
    fastify.addHook('onRequestAbort', function releaseAborted (request, done) {
      release(request)
      done()
    })
  }
  fastify.metrics.registry.registerMetric(new Gauge({
    name: 'hookgate_unverified_body_bytes',
    help: 'Bytes of delivery bodies held (declared) before their signature is checked.',
    registers: [],
    collect () { this.set(held) }
  }))

  fastify.addHook('preHandler', async function verifySignature (request, reply) {
    const route = request.routeOptions.config.provider
    if (route === undefined) return
    if (request.unverifiedBytes !== 0) release(request)
    const raw = Buffer.isBuffer(request.body) ? request.body : noBody
    const probe = route.definition.unsignedProbe?.(raw, request.headers)
    if (probe !== undefined) {
      // Answered as the sender's own framework answers it, unverified: nothing is stored or audited.
      request.delivery = { provider: route.definition.name, outcome: 'handshake' }
      return await reply.send(probe)
    }
    const now = Math.floor(Date.now() / 1000)
    // The public URL only when a verifier reads it (Twilio signs it): forwarded headers are parsed then.
    const context = { toleranceSeconds: route.toleranceSeconds, get url () { return publicUrl(request) } }
    const result = route.definition.verify(raw, request.headers, route.secrets, now, context)
    if (!result.ok) return await this.rejectDelivery(request, reply, 401, result.reason)
  })

  /**
   * The URL the sender requested: PUBLIC_BASE_URL when set, else what the Host (or the trusted
   * forwarded headers) say, once it is a valid host[:port]: a Host with `/`, `?`, `@`... would let a
   * client choose the URL that is verified. An invalid one is a 400 (audited).
   */
  function publicUrl (request: FastifyRequest): string {
    if (fastify.config.publicBaseUrl !== undefined) return fastify.config.publicBaseUrl + request.url
    if (!VALID_HOST.test(request.host)) throw new HttpError(400, 'invalid_host', 'the Host header is not a valid host[:port]')
    return `${request.protocol}://${request.host}${request.url}`
  }
}, { name: 'verify', dependencies: ['delivery-outcome', 'metrics'] })
