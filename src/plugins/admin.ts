import type { FastifyInstance, FastifyReply } from 'fastify'
import swagger from '@fastify/swagger'
import { Type } from 'typebox'
// Types only: the package's runtime (its validator compiler, typebox/compile and typebox/value: ~9 MB
// resident) is not used; Fastify's own Ajv compiles these schemas.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { constantTimeEqual } from '../signatures.js'
import {
  ConflictCopy, CopyParams, Decision, ErasureRequest, ErasureResult, Exception, ExceptionParams, ExceptionStatus, Failure, Nullable, Resolution, Run, RunDetail, RunFilter, RunParams, page
} from '../admin/schemas.js'

/**
 * The admin API under /admin (only when ADMIN_TOKEN is set): runs and their history, replay, and the
 * exception queue for human review. `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time.
 * An encapsulated plugin: its auth hook guards exactly these routes. OpenAPI at /admin/openapi.json.
 * Shapes in src/admin/schemas.ts, SQL in src/admin/repository.ts: the routes validate and answer.
 */
export default async function admin (instance: FastifyInstance): Promise<void> {
  const token = instance.config.adminToken as string
  const fastify = instance.withTypeProvider<TypeBoxTypeProvider>()
  const repository = fastify.adminRepository

  await fastify.register(swagger, {
    openapi: {
      info: { title: 'hookgate admin API', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }]
    }
  })

  // A failed sign-in counts toward the client's sign-in limit (ADMIN_SIGN_IN_LIMIT); past it, 429.
  fastify.addHook('onRequest', async (request, reply) => {
    const limited = await fastify.signInLimit(request)
    if (limited !== undefined) return await tooManyRefusals(reply, limited)
    const header = request.headers.authorization ?? ''
    // The scheme name is case-insensitive (RFC 7235).
    const presented = /^bearer +/i.test(header) ? header.replace(/^bearer +/i, '') : ''
    if (!constantTimeEqual(presented, token)) {
      const retryAfter = await fastify.countSignInFailure(request)
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
      querystring: RunFilter,
      response: { 200: Type.Object({ runs: Type.Array(Run), next_cursor: Nullable(Type.String()) }) }
    }
  }, async request => await repository.listRuns(request.query))

  fastify.get('/runs/:runId', {
    schema: {
      summary: 'One run with its payload, stored headers, event history and exceptions',
      params: RunParams,
      response: { 200: RunDetail, 404: Failure }
    }
  }, async (request, reply) => {
    const run = await repository.getRun(request.params.runId)
    return run ?? await reply.code(404).send({ error: 'not_found', message: 'no such run' })
  })

  fastify.post('/runs/:runId/replay', {
    schema: {
      summary: 'Process a run again from its stored payload (a new run event, not a new run)',
      params: RunParams,
      body: Decision,
      response: { 202: Type.Object({ run_id: Type.String(), status: Type.Literal('received') }), 404: Failure, 409: Failure }
    }
  }, async (request, reply) => {
    const { runId } = request.params
    switch (await repository.replayRun(runId, { by: request.body.by ?? 'admin', note: request.body.note })) {
      case 'requeued': return await reply.code(202).send({ run_id: runId, status: 'received' })
      case 'not_found': return await reply.code(404).send({ error: 'not_found', message: 'no such run' })
      case 'processing': return await reply.code(409).send({ error: 'conflict', message: 'the run is being processed; replay it once this attempt ends' })
    }
  })

  fastify.post('/erasure', {
    schema: {
      summary: "Erase the payloads of one provider's runs matching an idempotency key, or a value at a JSON path; audit facts are kept",
      body: ErasureRequest,
      response: { 200: ErasureResult, 400: Failure }
    }
  }, async (request, reply) => {
    const { provider, idempotency_key: idempotencyKey, path, value, limit, cursor, scan, note, by = 'admin' } = request.body
    if ((idempotencyKey === undefined) === (path === undefined && value === undefined) || (path === undefined) !== (value === undefined)) {
      return await reply.code(400).send({ error: 'bad_request', message: 'give either idempotency_key, or path and value' })
    }
    return await repository.eraseRuns(idempotencyKey !== undefined
      ? { provider, idempotencyKey, limit, note, by }
      : { provider, path: path as string[], value: value as string, cursor, scan, limit, note, by })
  })

  fastify.get('/exceptions', {
    schema: {
      summary: 'The human-review queue, newest first',
      querystring: Type.Object({ ...page, status: ExceptionStatus }),
      response: { 200: Type.Object({ exceptions: Type.Array(Exception), next_cursor: Nullable(Type.String()) }) }
    }
  }, async request => await repository.listExceptions(request.query.status, request.query.cursor, request.query.limit))

  fastify.get('/exceptions/:exceptionId/copies/:sha256', {
    schema: {
      summary: "One conflicting delivery's payload kept by a payload-conflict exception, whole",
      params: CopyParams,
      response: { 200: ConflictCopy, 404: Failure }
    }
  }, async (request, reply) => {
    const copy = await repository.exceptionCopy(request.params.exceptionId, request.params.sha256)
    return copy ?? await reply.code(404).send({ error: 'not_found', message: 'no such copy' })
  })

  fastify.post('/exceptions/:exceptionId/resolve', {
    schema: {
      summary: 'Resolve an exception: retry the run, or close it with a note',
      params: ExceptionParams,
      body: Resolution,
      response: { 200: Exception, 404: Failure, 409: Failure }
    }
  }, async request => {
    const { action, note, by = 'admin' } = request.body
    return await repository.closeException(request.params.exceptionId, 'resolved', { action, note, by })
  })

  fastify.post('/exceptions/:exceptionId/dismiss', {
    schema: {
      summary: 'Dismiss an exception: nothing to do',
      params: ExceptionParams,
      body: Decision,
      response: { 200: Exception, 404: Failure, 409: Failure }
    }
  }, async request => await repository.closeException(request.params.exceptionId, 'dismissed', { note: request.body.note, by: request.body.by ?? 'admin' }))
}
