import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import sjson from 'secure-json-parse'
import type { VerifyResult } from './signatures.js'

/**
 * What a provider declares. `defineProvider` turns it into an encapsulated Fastify plugin that
 * registers `POST /webhooks/<name>`; the shared verify hook (plugins/verify.ts) and the ingest
 * plugin (plugins/ingest.ts) do the rest. A new provider is one file in src/providers/.
 */
export interface ProviderDefinition<Event = unknown> {
  /** Route segment and `ops.runs.provider`: lowercase letters, digits, `-`, `_`. */
  name: string
  /** Environment variable holding the secret(s): several, comma-separated or a JSON array, while rotating. */
  secretEnv: string
  /** Default tolerance for signed timestamps; `<NAME>_TOLERANCE_SECONDS` overrides it. */
  toleranceSeconds?: number
  /** Headers that carry signatures or keys: never stored, never logged. */
  signatureHeaders: readonly string[]
  /** Media types the sender uses; default `application/json`. */
  contentTypes?: readonly string[]
  /** Largest body this sender may post; default BODY_LIMIT_BYTES. */
  bodyLimit?: number
  /** Pure: raw bytes + headers + secrets + clock (unix seconds) → verified or a reason. */
  verify: (raw: Buffer, headers: IncomingHttpHeaders, secrets: readonly string[], now: number, toleranceSeconds: number) => VerifyResult
  /** The provider's own event id and type. Only called on a verified, parsed body. */
  identify: (event: Event, headers: IncomingHttpHeaders) => { idempotencyKey: unknown, eventType: unknown }
  /** A fresh development secret (never used in production). */
  generateSecret: () => string
  /** The headers the sender would add to `raw`: lets `npm run send` post a correctly signed test event. */
  sign?: (raw: Buffer, secret: string, now: number) => Record<string, string>
  /** A realistic event for `npm run send`. */
  sampleEvent?: () => unknown
}

/** A provider as enabled at boot: its definition, its secrets and tolerance. Carried in the route config. */
export interface ProviderRoute {
  definition: ProviderDefinition<any>
  secrets: readonly string[]
  toleranceSeconds: number
}

export type ProviderPlugin = FastifyPluginAsync & { provider: ProviderDefinition<any> }

declare module 'fastify' {
  interface FastifyContextConfig {
    provider?: ProviderRoute
  }
}

export function defineProvider<Event> (definition: ProviderDefinition<Event>): ProviderPlugin {
  async function providerRoutes (fastify: FastifyInstance): Promise<void> {
    const route = fastify.providers.enable(definition)
    if (route === undefined) return
    // This scope only: the body stays the exact bytes the sender signed; it is parsed after verification.
    fastify.removeAllContentTypeParsers()
    fastify.addContentTypeParser([...(definition.contentTypes ?? ['application/json'])], { parseAs: 'buffer' }, keepBytes)
    fastify.post(`/webhooks/${definition.name}`, {
      config: { provider: route },
      bodyLimit: definition.bodyLimit
    }, receiveDelivery)
  }
  return Object.assign(providerRoutes, { provider: definition })
}

function keepBytes (_request: FastifyRequest, body: Buffer, done: (err: null, body: Buffer) => void): void {
  done(null, body)
}

/** The route handler of every provider. Runs after the verify hook has accepted the signature. */
async function receiveDelivery (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const { definition } = request.routeOptions.config.provider as ProviderRoute
  const raw = request.body as Buffer
  const payload = raw.toString('utf8')
  let event: unknown
  try {
    // Fastify's own rules for untrusted JSON: __proto__ and constructor.prototype keys are refused.
    event = sjson.parse(payload, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch {
    return this.rejectDelivery(request, reply, 400, 'malformed_payload')
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return this.rejectDelivery(request, reply, 400, 'malformed_payload')

  const { idempotencyKey, eventType } = definition.identify(event, request.headers)
  const key = eventKey(idempotencyKey)
  // Never a made-up key: an event without its provider's id cannot be deduplicated.
  if (key === undefined) return this.rejectDelivery(request, reply, 400, 'missing_event_id')

  const run = await this.ingestDelivery(request, {
    provider: definition.name,
    idempotencyKey: key,
    eventType: typeof eventType === 'string' ? eventType.slice(0, 255) : null,
    raw,
    payload
  })
  reply.send({ status: run.duplicate ? 'duplicate' : 'accepted', run_id: run.runId })
}

/** A usable idempotency key: a non-empty string of at most 255 characters, or a safe integer. */
export function eventKey (value: unknown): string | undefined {
  if (typeof value === 'string') return value.length > 0 && value.length <= 255 ? value : undefined
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value)
  return undefined
}
