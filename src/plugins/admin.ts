import type { FastifyInstance, FastifyReply } from 'fastify'
import swagger from '@fastify/swagger'
import { Type, type Static, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { constantTimeEqual } from '../signatures.js'
import { RUN_STATUSES, requeueRun } from '../queue.js'
import { HttpError } from '../errors.js'

const Timestamp = Type.String({ format: 'date-time' })
const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])
const Status = Type.Union(RUN_STATUSES.map(s => Type.Literal(s)))

const runProperties = {
  run_id: Type.String({ format: 'uuid' }),
  provider: Type.String(),
  idempotency_key: Type.String(),
  event_type: Nullable(Type.String()),
  status: Type.String(),
  attempts: Type.Integer(),
  received_at: Timestamp,
  started_at: Nullable(Timestamp),
  completed_at: Nullable(Timestamp),
  next_attempt_at: Timestamp,
  last_error: Nullable(Type.String())
}
const Run = Type.Object(runProperties)

const RunEvent = Type.Object({ type: Type.String(), at: Timestamp, data: Type.Unknown() })

const Exception = Type.Object({
  exception_id: Type.String({ format: 'uuid' }),
  run_id: Type.String({ format: 'uuid' }),
  provider: Type.String(),
  event_type: Nullable(Type.String()),
  reason: Type.String(),
  details: Type.Unknown(),
  status: Type.String(),
  created_at: Timestamp,
  closed_at: Nullable(Timestamp),
  closed_by: Nullable(Type.String()),
  resolution: Nullable(Type.String()),
  note: Nullable(Type.String())
})

const page = {
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ format: 'uuid', description: 'next_cursor of the previous page' }))
}
const decision = {
  note: Type.Optional(Type.String({ maxLength: 2000 })),
  by: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'who decided (default "admin")' }))
}
const Decision = Type.Object(decision, { additionalProperties: false })
const Failure = Type.Object({ error: Type.String(), message: Type.Optional(Type.String()) })

/**
 * The admin API under /admin (only when ADMIN_TOKEN is set): runs and their history, replay, and the
 * exception queue for human review. `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.
 * An encapsulated plugin: its auth hook guards exactly these routes. OpenAPI at /admin/openapi.json.
 */
export default async function admin (instance: FastifyInstance): Promise<void> {
  const token = instance.config.adminToken as string
  const fastify = instance.withTypeProvider<TypeBoxTypeProvider>()
  const { pool } = fastify.pg

  await fastify.register(swagger, {
    openapi: {
      info: { title: 'hookgate admin API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }]
    }
  })

  // A failed sign-in counts toward the client's refusal limit like a forged delivery; past it, 429.
  fastify.addHook('onRequest', async (request, reply) => {
    const limited = await fastify.refusalLimit(request)
    if (limited !== undefined) return await tooManyRefusals(reply, limited)
    const header = request.headers.authorization ?? ''
    // The scheme name is case-insensitive (RFC 7235).
    const presented = /^bearer +/i.test(header) ? header.replace(/^bearer +/i, '') : ''
    if (!constantTimeEqual(presented, token)) {
      const retryAfter = await fastify.countRefusal(request)
      if (retryAfter !== undefined) return await tooManyRefusals(reply, retryAfter)
      return await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: 'Authorization: Bearer <ADMIN_TOKEN> required' })
    }
  })

  async function tooManyRefusals (reply: FastifyReply, retryAfter: number): Promise<FastifyReply> {
    return await reply.code(429).header('retry-after', String(retryAfter)).send({ error: 'too_many_requests', message: 'too many failed sign-ins from this client, try again later' })
  }

  // An empty POST (replay, dismiss) is an empty decision.
  fastify.addHook('preValidation', async request => {
    if (request.method === 'POST' && request.body === undefined) request.body = {}
  })

  fastify.get('/openapi.json', { schema: { hide: true } }, async () => fastify.swagger())

  fastify.get('/runs', {
    schema: {
      summary: 'List runs, newest first, filtered; keyset pagination',
      querystring: Type.Object({
        ...page,
        provider: Type.Optional(Type.String()),
        status: Type.Optional(Status),
        event_type: Type.Optional(Type.String()),
        since: Type.Optional(Timestamp),
        until: Type.Optional(Timestamp)
      }),
      response: { 200: Type.Object({ runs: Type.Array(Run), next_cursor: Nullable(Type.String()) }) }
    }
  }, async request => {
    const q = request.query
    const { rows } = await pool.query(
      `SELECT run_id, provider, idempotency_key, event_type, status, attempts, received_at, started_at, completed_at, next_attempt_at, last_error
       FROM ops.runs
       WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR event_type = $3)
         AND ($4::timestamptz IS NULL OR received_at >= $4) AND ($5::timestamptz IS NULL OR received_at < $5)
         AND ($6::uuid IS NULL OR (received_at, run_id) < (SELECT received_at, run_id FROM ops.runs WHERE run_id = $6))
       ORDER BY received_at DESC, run_id DESC
       LIMIT $7`,
      [q.provider ?? null, q.status ?? null, q.event_type ?? null, q.since ?? null, q.until ?? null, q.cursor ?? null, q.limit])
    return { runs: rows, next_cursor: rows.length === q.limit ? rows[rows.length - 1].run_id : null }
  })

  fastify.get('/runs/:runId', {
    schema: {
      summary: 'One run with its payload, stored headers, event history and exceptions',
      params: Type.Object({ runId: Type.String({ format: 'uuid' }) }),
      response: {
        200: Type.Object({ ...runProperties, payload: Type.Unknown(), headers: Type.Unknown(), events: Type.Array(RunEvent), exceptions: Type.Array(Exception) }),
        404: Failure
      }
    }
  }, async (request, reply) => {
    const { rows: [run] } = await pool.query('SELECT * FROM ops.runs WHERE run_id = $1', [request.params.runId])
    if (run === undefined) return await reply.code(404).send({ error: 'not_found', message: 'no such run' })
    const [{ rows: events }, { rows: exceptions }] = await Promise.all([
      pool.query('SELECT type, at, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [run.run_id]),
      pool.query(`${EXCEPTIONS} WHERE e.run_id = $1 ORDER BY e.created_at`, [run.run_id])
    ])
    return { ...run, events, exceptions }
  })

  fastify.post('/runs/:runId/replay', {
    schema: {
      summary: 'Process a run again from its stored payload (a new run event, not a new run)',
      params: Type.Object({ runId: Type.String({ format: 'uuid' }) }),
      body: Decision,
      response: { 202: Type.Object({ run_id: Type.String(), status: Type.Literal('received') }), 404: Failure, 409: Failure }
    }
  }, async (request, reply) => {
    const { runId } = request.params
    if (await requeueRun(pool, runId, 'replay_requested', { by: request.body.by ?? 'admin', note: request.body.note })) {
      return await reply.code(202).send({ run_id: runId, status: 'received' })
    }
    const { rowCount } = await pool.query('SELECT 1 FROM ops.runs WHERE run_id = $1', [runId])
    return rowCount === 0
      ? await reply.code(404).send({ error: 'not_found', message: 'no such run' })
      : await reply.code(409).send({ error: 'conflict', message: 'the run is being processed; replay it once this attempt ends' })
  })

  fastify.get('/exceptions', {
    schema: {
      summary: 'The human-review queue, newest first',
      querystring: Type.Object({ ...page, status: Type.Union([Type.Literal('open'), Type.Literal('resolved'), Type.Literal('dismissed')], { default: 'open' }) }),
      response: { 200: Type.Object({ exceptions: Type.Array(Exception), next_cursor: Nullable(Type.String()) }) }
    }
  }, async request => {
    const q = request.query
    const { rows } = await pool.query(
      `${EXCEPTIONS} WHERE e.status = $1
         AND ($2::uuid IS NULL OR (e.created_at, e.exception_id) < (SELECT created_at, exception_id FROM ops.exceptions WHERE exception_id = $2))
       ORDER BY e.created_at DESC, e.exception_id DESC LIMIT $3`, [q.status, q.cursor ?? null, q.limit])
    return { exceptions: rows, next_cursor: rows.length === q.limit ? rows[rows.length - 1].exception_id : null }
  })

  const ExceptionParams = Type.Object({ exceptionId: Type.String({ format: 'uuid' }) })

  fastify.post('/exceptions/:exceptionId/resolve', {
    schema: {
      summary: 'Resolve an exception: retry the run, or close it with a note',
      params: ExceptionParams,
      body: Type.Object({ ...decision, action: Type.Union([Type.Literal('retry'), Type.Literal('close')]) }, { additionalProperties: false }),
      response: { 200: Exception, 404: Failure, 409: Failure }
    }
  }, async request => {
    const { action, note, by = 'admin' } = request.body
    return await closeException(request.params.exceptionId, 'resolved', { action, note, by })
  })

  fastify.post('/exceptions/:exceptionId/dismiss', {
    schema: {
      summary: 'Dismiss an exception: nothing to do',
      params: ExceptionParams,
      body: Decision,
      response: { 200: Exception, 404: Failure, 409: Failure }
    }
  }, async request => {
    return await closeException(request.params.exceptionId, 'dismissed', { note: request.body.note, by: request.body.by ?? 'admin' })
  })

  /** One transaction: the exception closes, the run follows (requeued, completed or ignored), both audited. */
  async function closeException (
    exceptionId: string, status: 'resolved' | 'dismissed', decision: { action?: 'retry' | 'close', note?: string, by: string }
  ): Promise<Static<typeof Exception>> {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      const { rows: [closed] } = await client.query(
        `UPDATE ops.exceptions SET status = $2, closed_at = now(), closed_by = $3, resolution = $4, note = $5
         WHERE exception_id = $1 AND status = 'open' RETURNING run_id`,
        [exceptionId, status, decision.by, decision.action ?? null, decision.note ?? null])
      if (closed === undefined) {
        await client.query('ROLLBACK')
        const { rowCount } = await pool.query('SELECT 1 FROM ops.exceptions WHERE exception_id = $1', [exceptionId])
        throw rowCount === 0
          ? new HttpError(404, 'not_found', 'no such exception')
          : new HttpError(409, 'conflict', 'the exception is already closed')
      }
      const audit = { exception_id: exceptionId, ...decision }
      const eventType = status === 'dismissed' ? 'exception_dismissed' : 'exception_resolved'
      if (decision.action === 'retry') {
        await requeueRun(client, closed.run_id, eventType, audit)
      } else {
        // Closed or dismissed: a run that stopped on this exception ends (completed or ignored).
        await client.query(
          `WITH ended AS (
             UPDATE ops.runs SET status = $2, completed_at = now() WHERE run_id = $1 AND status = 'exception' RETURNING run_id
           )
           INSERT INTO ops.run_events (run_id, type, data) VALUES ($1, $3, $4::jsonb)`,
          [closed.run_id, status === 'dismissed' ? 'ignored' : 'completed', eventType, JSON.stringify(audit)])
      }
      await client.query('COMMIT')
      const { rows: [exception] } = await pool.query(`${EXCEPTIONS} WHERE e.exception_id = $1`, [exceptionId])
      return exception as Static<typeof Exception>
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    } finally {
      client.release()
    }
  }
}

const EXCEPTIONS = `
SELECT e.exception_id, e.run_id, r.provider, r.event_type, e.reason, e.details, e.status, e.created_at,
       e.closed_at, e.closed_by, e.resolution, e.note
FROM ops.exceptions e JOIN ops.runs r USING (run_id)`
