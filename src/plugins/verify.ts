import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'

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
    const now = Math.floor(Date.now() / 1000)
    // The public URL only when a verifier reads it (Twilio signs it): forwarded headers are parsed then.
    const context = { toleranceSeconds: route.toleranceSeconds, get url () { return publicUrl(request) } }
    const result = route.definition.verify(raw, request.headers, route.secrets, now, context)
    if (!result.ok) return await this.rejectDelivery(request, reply, 401, result.reason)
  })

  /** The URL the sender requested: PUBLIC_BASE_URL when set, else what the (trusted) forwarded headers say. */
  function publicUrl (request: FastifyRequest): string {
    const base = fastify.config.publicBaseUrl ?? `${request.protocol}://${request.host}`
    return base + request.url
  }
}, { name: 'verify', dependencies: ['ingest'] })
