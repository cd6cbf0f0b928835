import { Agent, request } from 'undici'
import { ConfigError, NAME_PATTERN, readJsonSetting, settingValidator } from './config.js'
import { parseSecrets } from './plugins/providers.js'
import { hmacKey, signStandardWebhook } from './schemes/standard-webhooks.js'
import { done, failed, raiseException, retryLater, type Outcome } from './outcomes.js'

/**
 * Forwarding without code: DESTINATIONS (a JSON file, or the JSON array itself) names internal HTTP
 * endpoints and which runs they receive (by provider and event-type pattern). Each receives the
 * verified event re-signed by hookgate with Standard Webhooks headers (`webhook-id` = the run id),
 * so internal services verify one scheme only, whatever the sender was.
 *   2xx → done · 409 → exception (a conflict with the system of record) · 3xx (never followed) and
 *   other 4xx → failed · 5xx, timeout, refused → retry. At most 4 KB of an answer is read, within
 *   `timeoutMs` from the request to the last byte.
 */
export interface Destination {
  name: string
  matches: (provider: string, eventType: string | null) => boolean
  forward: (run: { run_id: string, provider: string, event_type: string | null, payload: unknown }) => Promise<Outcome>
  /** Closes its kept-alive connections. */
  close: () => Promise<void>
}

const schema = {
  type: 'array',
  items: {
    type: 'object',
    required: ['name', 'url', 'secretEnv'],
    additionalProperties: false,
    properties: {
      name: { type: 'string', pattern: NAME_PATTERN },
      url: { type: 'string', pattern: '^https?://' },
      secretEnv: { type: 'string', pattern: '^[A-Z][A-Z0-9_]*$' },
      providers: { type: 'array', items: { type: 'string' } },
      events: { type: 'array', items: { type: 'string', minLength: 1 } },
      timeoutMs: { type: 'integer', minimum: 1, default: 10000 },
      concurrency: { type: 'integer', minimum: 1, default: 8 }
    }
  }
} as const

interface DestinationConfig {
  name: string
  url: string
  secretEnv: string
  providers?: string[]
  events?: string[]
  timeoutMs: number
  concurrency: number
}

const validate = settingValidator<DestinationConfig[]>('DESTINATIONS', schema)

export async function loadDestinations (value: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<Destination[]> {
  if (value === undefined) return []
  const config = await readJsonSetting('DESTINATIONS', value)
  return validate(config).map(entry => {
    const [secret] = parseSecrets(env[entry.secretEnv], entry.secretEnv)
    if (secret === undefined) throw new ConfigError(`destination ${entry.name}: ${entry.secretEnv} is not set (a whsec_ secret to sign what it receives)`)
    // A secret that decodes to no key (empty, all zero bytes) would sign with a key anyone can guess.
    if (hmacKey(secret) === undefined) throw new ConfigError(`destination ${entry.name}: ${entry.secretEnv} decodes to an empty or all-zero key (use whsec_ + base64 of 24+ random bytes)`)
    return destination(entry, secret)
  })
}

/** `invoice.*` matches `invoice.paid`; `*` matches everything. */
export function patternMatcher (patterns: readonly string[] | undefined): (value: string | null) => boolean {
  if (patterns === undefined || patterns.length === 0) return () => true
  const expressions = patterns.map(p => new RegExp(`^${p.split('*').map(part => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`))
  return value => value !== null && expressions.some(re => re.test(value))
}

function destination (entry: DestinationConfig, secret: string): Destination {
  const eventMatches = patternMatcher(entry.events)
  const limit = semaphore(entry.concurrency)
  // undici's request, not fetch: no WHATWG streams, no decoding, no redirect handling (none wanted),
  // a third of fetch's CPU per forwarded run (npm run bench, one loopback destination).
  const dispatcher = new Agent({ connections: entry.concurrency })
  return {
    close: async () => { await dispatcher.close() },
    name: entry.name,
    matches: (provider, eventType) => (entry.providers === undefined || entry.providers.includes(provider)) && eventMatches(eventType),
    forward: async run => await limit(async () => {
      const body = Buffer.from(JSON.stringify(run.payload))
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'hookgate',
        // An answer is only ever read for a short excerpt: nothing to inflate.
        'accept-encoding': 'identity',
        'x-hookgate-provider': run.provider,
        ...(run.event_type === null ? {} : { 'x-hookgate-event-type': run.event_type }),
        ...signStandardWebhook(body, secret, Math.floor(Date.now() / 1000), run.run_id)
      }
      // One deadline for the whole exchange, from the request to the last byte read of the answer.
      // A timer cleared when the exchange ends (AbortSignal.timeout left one per run pending for
      // timeoutMs: 30,000 timers at 3,000 runs/s, and 14 times the CPU to create).
      const deadline = new AbortController()
      const timer = setTimeout(() => { deadline.abort() }, entry.timeoutMs)
      let status: number
      let excerpt: string
      try {
        // A redirect is never followed (it could lead anywhere, with the signed body): it is refused below.
        const response = await request(entry.url, { method: 'POST', headers, body, signal: deadline.signal, dispatcher, maxRedirections: 0 })
        status = response.statusCode
        if (status >= 200 && status < 300) {
          // Nothing of a success is kept: read to its end (the connection serves the next run), or
          // dropped past undici's limit.
          await response.body.dump()
          return done()
        }
        // At most a few KB of the answer are read, whatever it claims; the rest is dropped (a short
        // answer is read to its end, so that its connection is kept for the next run).
        excerpt = await readExcerpt(response.body, MAX_EXCERPT_BYTES)
        // Asked for identity: an encoded answer anyway is never inflated (a gzip bomb stays 500 KB).
        const encoding = response.headers['content-encoding']
        if (encoding !== undefined && encoding !== 'identity') excerpt = `[a ${String(encoding).slice(0, 40)}-encoded answer, not decoded]`
      } catch (err) {
        const reason = deadline.signal.aborted ? `timed out after ${entry.timeoutMs} ms` : (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
        return retryLater(`destination ${entry.name}: ${reason}`)
      } finally {
        clearTimeout(timer)
      }
      if (status >= 300 && status < 400) return failed(`destination ${entry.name} answered a redirect (${status}): not followed, fix its URL`)
      if (status === 409) return raiseException('destination_conflict', { destination: entry.name, status: 409, response: excerpt })
      if (status >= 400 && status < 500) return failed(`destination ${entry.name} answered ${status}: ${excerpt.slice(0, 200)}`)
      return retryLater(`destination ${entry.name} answered ${status}`)
    })
  }
}

/** What is kept of a destination's error answer (for the exception or last_error). */
const MAX_EXCERPT_BYTES = 4096

/** The first `max` bytes of an answer's body as text; a longer body is destroyed after them. */
export async function readExcerpt (body: AsyncIterable<Uint8Array> & { destroy: () => unknown }, max: number): Promise<string> {
  const chunks: Uint8Array[] = []
  let length = 0
  let ended = true
  try {
    for await (const chunk of body) {
      chunks.push(chunk)
      length += chunk.length
      if (length >= max) { ended = false; break }
    }
  } finally {
    if (!ended) body.destroy()
  }
  // Control characters dropped: PostgreSQL stores no \u0000 in jsonb, and a log reader wants none.
  // eslint-disable-next-line no-control-regex
  return Buffer.concat(chunks).subarray(0, max).toString('utf8').replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|\uFFFD$/g, '').slice(0, 1000)
}

/** At most `size` calls of the returned function run at once; the others wait their turn. */
function semaphore (size: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0
  const waiting: Array<() => void> = []
  return async task => {
    if (running >= size) await new Promise<void>(resolve => waiting.push(resolve))
    running++
    try {
      return await task()
    } finally {
      running--
      waiting.shift()?.()
    }
  }
}
