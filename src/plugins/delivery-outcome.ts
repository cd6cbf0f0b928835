import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sha256 } from '../signatures.js'
import { errorName } from '../errors.js'
import { refusalAggregate } from '../refusal-aggregate.js'

/**
 * How a delivery ended, for everything that does not store a run: refusals (counted toward the
 * client's limit, audited without the body), limited clients answered before their body is read,
 * protocol handshakes. The outcome of each delivery is set where it is decided (here, in
 * plugins/verify.ts for an unsigned probe, in plugins/ingest.ts after the commit, in plugins/errors.ts
 * for an answer that is not a 2xx) and written out once, when the answer has gone
 * (plugins/delivery-log.ts).
 */

/** What the one log line of a delivery says (plugins/delivery-log.ts), set once its outcome is known. */
export interface DeliverySummary {
  provider: string
  outcome: 'accepted' | 'duplicate' | 'conflict' | 'rejected' | 'unavailable' | 'handshake'
  eventId?: string
  eventType?: string | null
  runId?: string
  reason?: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Refuses a delivery: counts it toward the client's limit, audits it (never its body), notes it
     * for the log line and answers; past the limit a 429, audited in a per-minute aggregate.
     */
    rejectDelivery: (request: FastifyRequest, reply: FastifyReply, statusCode: number, reason: string, details?: Record<string, unknown>) => Promise<FastifyReply>
    /** Answers a verified protocol handshake (no run is created; the exchange is audited). */
    answerHandshake: (request: FastifyRequest, reply: FastifyReply, answer: unknown) => Promise<FastifyReply>
  }
  interface FastifyRequest {
    delivery: DeliverySummary | null
  }
}

/** Deliveries that create no run (refused, handshakes) are audited with run_id NULL. */
const AUDIT_WITHOUT_RUN = "INSERT INTO ops.run_events (run_id, type, data, tier) VALUES (NULL, $1, $2::jsonb, 'audit')"

/** Refusals of limited clients: one row per client, provider, reason and minute, with a count. */
const AUDIT_AGGREGATES = `INSERT INTO ops.run_events (run_id, type, at, data, tier)
SELECT NULL, 'rejected_aggregate', (row->>'minute')::timestamptz, row, 'audit' FROM jsonb_array_elements($1::jsonb) AS row`

export default fp(async function deliveryOutcome (fastify) {
  fastify.decorateRequest('delivery', null)

  fastify.decorate('rejectDelivery', async function rejectDelivery (request: FastifyRequest, reply: FastifyReply, statusCode: number, reason: string, details?: Record<string, unknown>) {
    const provider = request.routeOptions.config.provider?.definition.name ?? 'unknown'
    // Every refusal counts toward the client's limit (a headers-only 413 costs the sender nothing).
    const retryAfter = await fastify.countRefusal(request)
    if (retryAfter !== undefined) return await refuseLimited(request, reply, retryAfter, reason)
    request.delivery = { ...request.delivery, provider, outcome: 'rejected', reason }
    await auditWithoutRun(request, 'rejected', { provider, reason, status: statusCode, ...details })
    return await reply.code(statusCode).send({ error: errorName(statusCode), reason, ...details })
  })

  // A client past its refusal limit is answered before its body is read, let alone parsed.
  fastify.addHook('onRequest', async function refuseLimitedClient (request, reply) {
    if (request.routeOptions.config.provider === undefined) return
    const retryAfter = await fastify.refusalLimit(request)
    if (retryAfter !== undefined) return await refuseLimited(request, reply, retryAfter, 'too_many_refusals')
  })

  /** 429 + Retry-After; audited in the per-minute aggregate, not row by row. */
  async function refuseLimited (request: FastifyRequest, reply: FastifyReply, retryAfter: number, refused: string): Promise<FastifyReply> {
    const provider = request.routeOptions.config.provider?.definition.name ?? 'unknown'
    request.delivery = { ...request.delivery, provider, outcome: 'rejected', reason: 'too_many_refusals' }
    refusals.count(provider, refused, request.ip)
    return await reply.code(429).header('retry-after', String(retryAfter)).send({ error: errorName(429), reason: 'too_many_refusals' })
  }

  const refusals = refusalAggregate(async rows => {
    await fastify.pg.pool.query({ name: 'audit-refusals', text: AUDIT_AGGREGATES, values: [JSON.stringify(rows)] })
  }, err => { fastify.log.warn({ err: { message: err.message } }, 'could not audit aggregated refusals') })
  fastify.addHook('onClose', async () => { await refusals.stop() })

  fastify.decorate('answerHandshake', async function answerHandshake (request: FastifyRequest, reply: FastifyReply, answer: unknown) {
    const provider = request.routeOptions.config.provider?.definition.name ?? 'unknown'
    request.delivery = { provider, outcome: 'handshake' }
    await auditWithoutRun(request, 'handshake', { provider, status: 200 })
    return await reply.send(answer)
  })

  /** Who sent what (size and hash, never the body) for a delivery that created no run. */
  async function auditWithoutRun (request: FastifyRequest, type: string, data: Record<string, unknown>): Promise<void> {
    const body = Buffer.isBuffer(request.body) ? request.body : undefined
    const audit = {
      ...data,
      request_id: request.id,
      client_ip: request.ip,
      body_bytes: body?.length ?? (Number(request.headers['content-length']) || 0),
      body_sha256: body === undefined ? null : sha256(body).toString('hex')
    }
    try {
      // On the main pool: a flood of forged deliveries does not queue in front of real ones.
      await fastify.pg.pool.query({ name: 'audit-without-run', text: AUDIT_WITHOUT_RUN, values: [type, JSON.stringify(audit)] })
    } catch (err) {
      // The answer does not depend on this row; losing it must not turn a refusal into a 5xx.
      request.log.warn({ err: { message: (err as Error).message } }, `could not audit a ${type} delivery`)
    }
  }
}, { name: 'delivery-outcome', dependencies: ['database', 'metrics', 'protection'] })
