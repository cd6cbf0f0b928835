import type { IncomingHttpHeaders } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sha256 } from '../signatures.js'
import { SENSITIVE_HEADERS } from '../redact.js'
import { DatabaseUnavailableError, HttpError, errorName } from '../errors.js'
import { RUNS_CHANNEL } from '../queue.js'

/**
 * Storing deliveries. A verified event is recorded in ONE statement (one round trip, one commit):
 * the run is inserted ON CONFLICT DO NOTHING and a 'received' or 'duplicate' run event is appended
 * to whichever run holds the key. The handler answers only after that statement has committed.
 */
export interface Delivery {
  provider: string
  idempotencyKey: string
  eventType: string | null
  /** Stored, with nothing to process (status `ignored`). */
  ignored: boolean
  /** The exact bytes the sender signed. */
  raw: Buffer
  /** The body as JSON text, stored as `ops.runs.payload`. */
  payload: string
}

export interface IngestResult { runId: string, status: 'accepted' | 'duplicate' | 'conflict' }

/** What the one log line of a delivery says (plugins/delivery-log.ts). */
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
    ingestDelivery: (request: FastifyRequest, delivery: Delivery) => Promise<IngestResult>
    /** Refuses a delivery: audits it (never its body), notes it for the log line and answers. */
    rejectDelivery: (request: FastifyRequest, reply: FastifyReply, statusCode: number, reason: string) => Promise<FastifyReply>
    /** Answers a verified protocol handshake (no run is created; the exchange is audited). */
    answerHandshake: (request: FastifyRequest, reply: FastifyReply, answer: unknown) => Promise<FastifyReply>
  }
  interface FastifyRequest {
    delivery: DeliverySummary | null
  }
}

// One statement, one commit: the run (new, or the one already holding the key), its run event, an
// exception when the same key arrives with different signed bytes (a payload conflict), and a NOTIFY
// that wakes the workers (delivered at commit). The statement snapshot cannot see a run committed by
// a concurrent delivery of the same event while this INSERT waited on it: then `run` is empty and
// the caller looks again (a rare race).
const INGEST = `
WITH inserted AS (
  INSERT INTO ops.runs (provider, idempotency_key, event_type, payload, body_sha256, headers, status)
  VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $8)
  ON CONFLICT (provider, idempotency_key) DO NOTHING
  RETURNING run_id, status
), run AS (
  SELECT run_id, true AS is_new, false AS conflict, status FROM inserted
  UNION ALL
  SELECT run_id, false, body_sha256 <> $5, status FROM ops.runs
  WHERE provider = $1 AND idempotency_key = $2 AND NOT EXISTS (SELECT 1 FROM inserted)
), appended AS (
  INSERT INTO ops.run_events (run_id, type, data)
  SELECT run_id, CASE WHEN is_new THEN 'received' WHEN conflict THEN 'payload_conflict' ELSE 'duplicate' END, $7::jsonb FROM run
), raised AS (
  INSERT INTO ops.exceptions (run_id, reason, details)
  SELECT run_id, 'payload_conflict', jsonb_build_object('body_sha256', encode($5, 'hex'), 'payload', $4::jsonb, 'delivery', $7::jsonb)
  FROM run WHERE conflict
)
SELECT run_id, is_new, conflict FROM run
LEFT JOIN LATERAL (SELECT pg_notify('${RUNS_CHANNEL}', '') WHERE run.is_new AND run.status = 'received') AS wake ON true`

/** Deliveries that create no run (refused, handshakes) are audited with run_id NULL. */
const AUDIT_WITHOUT_RUN = 'INSERT INTO ops.run_events (run_id, type, data) VALUES (NULL, $1, $2::jsonb)'

export default fp(async function ingest (fastify) {
  const { pool } = fastify.pg
  fastify.decorateRequest('delivery', null)

  fastify.decorate('ingestDelivery', async function ingestDelivery (request: FastifyRequest, delivery: Delivery): Promise<IngestResult> {
    const { provider, idempotencyKey, eventType, ignored, raw, payload } = delivery
    const summary: DeliverySummary = { provider, outcome: 'unavailable', eventId: idempotencyKey, eventType }
    request.delivery = summary
    const signatureHeaders = request.routeOptions.config.provider?.definition.signatureHeaders ?? []
    const values = [
      provider, idempotencyKey, eventType, payload, sha256(raw),
      JSON.stringify(storableHeaders(request.headers, signatureHeaders)),
      JSON.stringify({ request_id: request.id, client_ip: request.ip, body_bytes: raw.length }),
      ignored ? 'ignored' : 'received'
    ]
    for (let attempt = 0; attempt < 3; attempt++) {
      let rows: Array<{ run_id: string, is_new: boolean, conflict: boolean }>
      try {
        ({ rows } = await pool.query({ name: 'ingest-delivery', text: INGEST, values }))
      } catch (err) {
        throw storageError(err)
      }
      const run = rows[0]
      if (run !== undefined) {
        const status = run.is_new ? 'accepted' : run.conflict ? 'conflict' : 'duplicate'
        summary.runId = run.run_id
        summary.outcome = status
        return { runId: run.run_id, status }
      }
    }
    throw new DatabaseUnavailableError('the delivery could not be recorded, try again')
  })

  fastify.decorate('rejectDelivery', async function rejectDelivery (request: FastifyRequest, reply: FastifyReply, statusCode: number, reason: string) {
    const provider = request.routeOptions.config.provider?.definition.name ?? 'unknown'
    request.delivery = { ...request.delivery, provider, outcome: 'rejected', reason }
    await auditWithoutRun(request, 'rejected', { provider, reason, status: statusCode })
    return await reply.code(statusCode).send({ error: errorName(statusCode), reason })
  })

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
      await pool.query({ name: 'audit-without-run', text: AUDIT_WITHOUT_RUN, values: [type, JSON.stringify(audit)] })
    } catch (err) {
      // The answer does not depend on this row; losing it must not turn a refusal into a 5xx.
      request.log.warn({ err: { message: (err as Error).message } }, `could not audit a ${type} delivery`)
    }
  }
}, { name: 'ingest', dependencies: ['database'] })

/** Request headers worth keeping with the run: everything but credentials and signatures. */
function storableHeaders (headers: IncomingHttpHeaders, signatureHeaders: readonly string[]): Record<string, unknown> {
  const kept: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!SENSITIVE_HEADERS.has(name) && !signatureHeaders.includes(name)) kept[name] = value
  }
  return kept
}

/**
 * A payload PostgreSQL refuses to store (class 22: a \u0000 or a lone surrogate in a JSON string)
 * is the sender's problem: 400, and retrying will not help. Anything else means we could not
 * commit: 503 so that the sender retries.
 */
function storageError (err: unknown): Error {
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string' && code.startsWith('22')) return new HttpError(400, 'unstorable_payload', 'the payload cannot be stored as JSON')
  return new DatabaseUnavailableError('the database could not commit the delivery, try again', err)
}
