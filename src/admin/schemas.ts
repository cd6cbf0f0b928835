import { Type } from 'typebox'
import { RUN_STATUSES } from '../queue.js'
import { NAME_PATTERN } from '../config.js'

/** The admin API's shapes (plugins/admin.ts): what it takes and answers, and its OpenAPI document. */

export const Timestamp = Type.String({ format: 'date-time' })
export const Nullable = <T extends ReturnType<typeof Type.String>>(schema: T) => Type.Union([schema, Type.Null()])
export const Status = Type.Union(RUN_STATUSES.map(s => Type.Literal(s)))

export const runProperties = {
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
export const Run = Type.Object(runProperties)

export const RunEvent = Type.Object({ type: Type.String(), at: Timestamp, data: Type.Unknown() })

export const Exception = Type.Object({
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

export const page = {
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Type.String({ format: 'uuid', description: 'next_cursor of the previous page' }))
}
export const decision = {
  note: Type.Optional(Type.String({ maxLength: 2000 })),
  by: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'who decided (default "admin")' }))
}
export const Decision = Type.Object(decision, { additionalProperties: false })
export const Failure = Type.Object({ error: Type.String(), message: Type.Optional(Type.String()) })

export const RunParams = Type.Object({ runId: Type.String({ format: 'uuid' }) })
export const ExceptionParams = Type.Object({ exceptionId: Type.String({ format: 'uuid' }) })
export const ExceptionStatus = Type.Union([Type.Literal('open'), Type.Literal('resolved'), Type.Literal('dismissed')], { default: 'open' })
export const RunFilter = Type.Object({
  ...page,
  provider: Type.Optional(Type.String()),
  status: Type.Optional(Status),
  event_type: Type.Optional(Type.String()),
  since: Type.Optional(Timestamp),
  until: Type.Optional(Timestamp)
})
export const RunDetail = Type.Object({
  ...runProperties,
  tier: Type.String({ description: 'where retention keeps it: live (in the partition of its day), held (kept past its day for review), legacy (stored before migration 011)' }),
  payload: Type.Unknown(),
  headers: Type.Unknown(),
  events: Type.Array(RunEvent, { description: 'the first 100 and the latest 400 events of its history, in order' }),
  events_total: Type.Integer({ description: 'how many events its history holds' }),
  exceptions: Type.Array(Exception, { description: "a payload conflict's copies without their payloads (body_sha256, deliveries, the first delivery's facts, excerpt): each whole from /exceptions/{id}/copies/{sha256}" })
})
export const CopyParams = Type.Object({ exceptionId: Type.String({ format: 'uuid' }), sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) })
export const ConflictCopy = Type.Object({ body_sha256: Type.String(), payload: Type.Optional(Type.Unknown()), delivery: Type.Optional(Type.Unknown()), payload_erased: Type.Optional(Type.Boolean()) })
export const Resolution = Type.Object({ ...decision, action: Type.Union([Type.Literal('retry'), Type.Literal('close')]) }, { additionalProperties: false })
export const ErasureRequest = Type.Object({
  provider: Type.String({ pattern: NAME_PATTERN }),
  idempotency_key: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'the event whose payload to erase' })),
  path: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 16, description: 'a JSON path in the payload: ["data", "object", "customer"]' })),
  value: Type.Optional(Type.String({ maxLength: 1000, description: 'erase every payload whose value at `path` is this (text)' })),
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 500, description: 'runs erased by this call at most; `more` says whether to call again' }),
  cursor: Type.Optional(Type.String({ format: 'uuid', description: 'by path: next_cursor of the previous call (the scan goes on after it)' })),
  scan: Type.Integer({ minimum: 1, maximum: 200000, default: 50000, description: 'by path: runs (of every provider, in run id order) read by this call at most' }),
  ...decision
}, { additionalProperties: false })
export const ErasureResult = Type.Object({
  erased: Type.Array(Type.String({ format: 'uuid' })),
  processing: Type.Array(Type.String({ format: 'uuid' }), { description: 'matching runs being processed now, left alone: call again once their attempt ends' }),
  scanned: Type.Integer({ description: 'by path: runs read by this call' }),
  next_cursor: Nullable(Type.String({ format: 'uuid', description: 'call again with this cursor to go on; null: done' })),
  more: Type.Boolean({ description: 'next_cursor is not null' })
})
