import { isUtf8 } from 'node:buffer'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import sjson from 'secure-json-parse'
import { headerValue, sha256, type VerifyResult } from './signatures.js'
import type { Handler } from './outcomes.js'

/**
 * What a provider declares. `defineProvider` turns it into an encapsulated Fastify plugin that
 * registers `POST /webhooks/<name>`; the shared verify hook (plugins/verify.ts) and the ingest
 * plugin (plugins/ingest.ts) do the rest. A new provider is one file in src/providers/.
 */
export interface ProviderDefinition<Event = any> {
  /** Route segment and `ops.runs.provider`: lowercase letters, digits, `-`, `_`. */
  name: string
  /** Environment variable holding the secret(s): several, comma-separated or a JSON array, while rotating. */
  secretEnv: string
  /** Default tolerance for signed timestamps; `<NAME>_TOLERANCE_SECONDS` overrides it. */
  toleranceSeconds?: number
  /** Headers that carry signatures or keys: never stored, never logged. */
  signatureHeaders: readonly string[]
  /** Media types the sender uses; default `application/json`. Form bodies are parsed into fields. */
  contentTypes?: readonly string[]
  /** Largest body this sender may post; default BODY_LIMIT_BYTES. */
  bodyLimit?: number
  /** Pure: raw bytes + headers + secrets + clock (unix seconds) → verified or a reason. */
  verify: (raw: Buffer, headers: IncomingHttpHeaders, secrets: readonly string[], now: number, context: VerifyContext) => VerifyResult
  /**
   * Turns the verified bytes into the event; default: JSON, or the fields of a form body. `form` comes
   * from the signed bytes themselves (`bodyForm`), never from the unsigned Content-Type. Throws if malformed.
   */
  parse?: (raw: Buffer, form: boolean) => unknown
  /**
   * Answered before the signature is checked, with nothing stored (Slack's unsigned `ssl_check`): only
   * for a request a sender's own framework answers unverified. Must be cheap and bounded.
   */
  unsignedProbe?: (raw: Buffer, headers: IncomingHttpHeaders) => unknown
  /** Headers the sender always sends: a verified delivery missing one is a 400 `missing_headers`. */
  requiredHeaders?: readonly string[]
  /**
   * Replay protection where the idempotency key comes from a header the signature does not cover and
   * no timestamp bounds a replay: the same signed bytes arriving again under another key are a
   * duplicate of the first run (audited `replayed_body`). `body`: the bytes alone; `body+type`: the
   * bytes and the event type (a sender that may send one body for two event types).
   */
  replayGuard?: 'body' | 'body+type'
  /**
   * A signed value that tells two sendings of the same bytes apart (a signed timestamp), added to the
   * replay guard's key: a replay inside the tolerance is a duplicate, the same body sent again later
   * (a second `{"type":"ping"}`) is a new event. Only read from verified deliveries.
   */
  replayStamp?: (headers: IncomingHttpHeaders) => string | undefined
  /**
   * What the signature covers, canonical, where that is not the raw bytes (Twilio signs its form
   * parameters sorted and joined, so reordered pairs or an appended `&=` verify alike): two deliveries
   * whose signed content is the same are the same content, for payload conflicts and the replay
   * guard. Default: the raw bytes. Only called on verified bytes.
   */
  signedContent?: (raw: Buffer, form: boolean) => Buffer
  /** A protocol handshake answered at once and not stored as a run (Slack's url_verification). */
  handshake?: (event: Event) => unknown
  /** The provider's own event id and type. Only called on a verified, parsed body. */
  identify: (event: Event, headers: IncomingHttpHeaders, raw: Buffer) => Identity
  /** Processing after the 2xx, by event type (or `*` for any): see src/outcomes.ts. */
  handlers?: Record<string, Handler<Event>>
  /** The answer body the sender expects; default `{ status, run_id }`. */
  respond?: (result: { status: 'accepted' | 'duplicate' | 'conflict', run_id: string }) => unknown
  /** A fresh development secret (never used in production); default 24 random bytes in hex. */
  generateSecret?: () => string
  /** The headers the sender would add to `raw` posted to `url`: lets `npm run send` post a signed test event. */
  sign?: (raw: Buffer, secret: string, now: number, url: string) => Record<string, string>
  /** A realistic event for `npm run send`, encoded as the first of `contentTypes`. */
  sampleEvent?: () => Record<string, unknown>
}

/** What a verifier knows besides bytes, headers, secrets and clock. */
export interface VerifyContext {
  toleranceSeconds: number
  /** The URL as the sender requested it (PUBLIC_BASE_URL, or the trusted forwarded headers): Twilio signs it. */
  url: string
}

export interface Identity {
  idempotencyKey: unknown
  eventType?: unknown
  /** Recorded, but nothing to process (a SePay outgoing transfer): the run is stored as `ignored`. */
  ignored?: boolean
  /** The key is there but cannot be trusted (a key parameter sent twice): a 400 with this reason. */
  refuse?: string
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
    // A worker-only replica knows every provider (for its handlers) but receives nothing.
    if (route === undefined || fastify.config.role === 'worker') return
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
async function receiveDelivery (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const { definition } = request.routeOptions.config.provider as ProviderRoute
  const raw = request.body as Buffer
  // What the bytes are decides how they are read; a Content-Type that says otherwise is refused.
  const acceptsForm = (definition.contentTypes ?? []).some(isForm)
  const form = acceptsForm && bodyForm(raw) === 'form'
  if (acceptsForm && form !== isForm(request.headers['content-type'] ?? '')) return await this.rejectDelivery(request, reply, 400, 'content_type_mismatch')
  const missing = (definition.requiredHeaders ?? []).filter(name => (headerValue(request.headers[name]) ?? '') === '')
  if (missing.length > 0) return await this.rejectDelivery(request, reply, 400, 'missing_headers', { missing })
  let event: unknown
  let payload: Buffer
  try {
    if (definition.parse !== undefined) {
      event = definition.parse(raw, form)
      payload = Buffer.from(JSON.stringify(event))
    } else if (form) {
      event = formFields(raw)
      payload = Buffer.from(JSON.stringify(event))
    } else {
      const text = raw.toString('utf8')
      event = parseJson(text)
      // Stored as received; bytes that are not UTF-8 are stored as read (U+FFFD for each bad sequence).
      payload = isUtf8(raw) ? raw : Buffer.from(text)
    }
  } catch (err) {
    return await this.rejectDelivery(request, reply, 400, err instanceof TooDeepError ? 'payload_too_deep' : err instanceof TooManyFieldsError ? 'too_many_fields' : 'malformed_payload')
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return await this.rejectDelivery(request, reply, 400, 'malformed_payload')

  const handshake = definition.handshake?.(event)
  if (handshake !== undefined) return await this.answerHandshake(request, reply, handshake)

  const { idempotencyKey, eventType, ignored, refuse } = definition.identify(event, request.headers, raw)
  if (refuse !== undefined) return await this.rejectDelivery(request, reply, 400, refuse)
  const key = eventKey(idempotencyKey)
  // Never a made-up key: an event without its provider's id cannot be deduplicated.
  if (key === undefined) return await this.rejectDelivery(request, reply, 400, 'missing_event_id')

  const type = typeof eventType === 'string' && eventType !== '' ? eventType.slice(0, 255) : null
  const run = await this.ingestDelivery(request, {
    provider: definition.name,
    idempotencyKey: key,
    eventType: type,
    // Nothing to process (no handler, no destination, in this process's configuration): completed by
    // the statement that stores it, instead of a claim and a finish later.
    status: ignored === true ? 'ignored' : this.nothingToDo(definition.name, type) ? 'completed' : 'received',
    raw,
    payload,
    contentHash: definition.signedContent === undefined ? undefined : sha256(definition.signedContent(raw, form)),
    replayGuard: definition.replayGuard,
    replayStamp: definition.replayStamp?.(request.headers),
    event
  })
  // A payload conflict is committed (and raised for review): the sender must not retry it either.
  const result = { status: run.status, run_id: run.runId }
  return definition.respond?.(result) ?? result
}

/** No provider nests an event this deep; past it the payload is refused before it is parsed. */
export const MAX_JSON_DEPTH = 64

class TooDeepError extends Error {}

/**
 * JSON the way Fastify treats untrusted JSON: `__proto__` and `constructor.prototype` keys are
 * refused, and so is nesting deeper than MAX_JSON_DEPTH (one pass over the text, strings skipped).
 */
export function parseJson (text: string): unknown {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) {
      inString = true
    } else if (c === 123 || c === 91) {
      if (++depth > MAX_JSON_DEPTH) throw new TooDeepError('payload nested too deep')
    } else if (c === 125 || c === 93) {
      depth--
    }
  }
  return sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
}

/** No sender posts more form fields than this (Twilio: about 40); past it a body is refused unread. */
export const MAX_FORM_FIELDS = 1000

export class TooManyFieldsError extends Error {}

/**
 * Fields of a form body; a name sent several times keeps every value, in order. No prototype is
 * touched. Linear in the body (it may run before a signature is checked): the `&`s are counted
 * first and a body of more than MAX_FORM_FIELDS fields is refused before it is decoded.
 */
export function formFields (raw: Buffer | string): Record<string, string | string[]> {
  const bytes = typeof raw === 'string' ? Buffer.from(raw) : raw
  let separators = 0
  for (let i = bytes.indexOf(38); i !== -1; i = bytes.indexOf(38, i + 1)) {
    if (++separators >= MAX_FORM_FIELDS) throw new TooManyFieldsError(`more than ${MAX_FORM_FIELDS} form fields`)
  }
  const fields = new Map<string, string | string[]>()
  for (const [name, value] of new URLSearchParams(bytes.toString())) {
    const seen = fields.get(name)
    if (seen === undefined) fields.set(name, value)
    else if (Array.isArray(seen)) seen.push(value)
    else fields.set(name, [seen, value])
  }
  return Object.fromEntries(fields)
}

/**
 * What the signed bytes are: a JSON object (or array) starts with `{` (or `[`) after optional
 * whitespace; a form body never does (its `{` would be `%7B`). Providers that take both read a body
 * by this, never by the Content-Type header, which the signature does not cover.
 */
export function bodyForm (raw: Buffer): 'json' | 'form' {
  for (const byte of raw) {
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue
    return byte === 0x7b || byte === 0x5b ? 'json' : 'form'
  }
  return 'form'
}

export function isForm (contentType: string): boolean {
  return contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')
}

/** Reads a dotted path (`data.object.id`, optionally `$.`-prefixed) from a parsed event. */
export function valueAt (event: unknown, path: string): unknown {
  let value = event
  for (const key of path.replace(/^\$\.?/, '').split('.')) {
    if (key === '') continue
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined
    value = (value as Record<string, unknown>)[key]
  }
  return value
}

/** A usable idempotency key: a non-empty string of at most 255 characters, or a safe integer. */
export function eventKey (value: unknown): string | undefined {
  if (typeof value === 'string') return value.length > 0 && value.length <= 255 ? value : undefined
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value)
  return undefined
}
