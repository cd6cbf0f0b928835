import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { HttpError } from '../errors.js'

/** A DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port. */
const VALID_HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/

/**
 * THE signature check of every provider route: a root-level preHandler that takes the provider
 * from the route config and runs its pure verifier on the exact bytes received. A refusal is a
 * 401 with a reason code, audited, and the handler never runs.
 */
export default fp(async function verify (fastify) {
  const noBody = Buffer.alloc(0)
  fastify.addHook('preHandler', async function verifySignature (request, reply) {
    const route = request.routeOptions.config.provider
    if (route === undefined) return
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
}, { name: 'verify', dependencies: ['delivery-outcome'] })
