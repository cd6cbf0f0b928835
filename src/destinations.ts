import { Ajv } from 'ajv'
import { ConfigError, readJsonSetting } from './config.js'
import { parseSecrets } from './plugins/providers.js'
import { signStandardWebhook } from './schemes/standard-webhooks.js'
import { done, failed, raiseException, retryLater, type Outcome } from './outcomes.js'

/**
 * Forwarding without code: DESTINATIONS (a JSON file, or the JSON array itself) names internal HTTP
 * endpoints and which runs they receive (by provider and event-type pattern). Each receives the
 * verified event re-signed by hookgate with Standard Webhooks headers (`webhook-id` = the run id),
 * so internal services verify one scheme only, whatever the sender was.
 *   2xx → done · 409 → exception (a conflict with the system of record) · other 4xx → failed ·
 *   5xx, timeout, refused → retry.
 */
export interface Destination {
  name: string
  matches: (provider: string, eventType: string | null) => boolean
  forward: (run: { run_id: string, provider: string, event_type: string | null, payload: unknown }) => Promise<Outcome>
}

const schema = {
  type: 'array',
  items: {
    type: 'object',
    required: ['name', 'url', 'secretEnv'],
    additionalProperties: false,
    properties: {
      name: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' },
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

const validate = new Ajv({ useDefaults: true, allErrors: true }).compile(schema)

export async function loadDestinations (value: string | undefined, env: Readonly<Record<string, string | undefined>>): Promise<Destination[]> {
  if (value === undefined) return []
  const config = await readJsonSetting('DESTINATIONS', value)
  if (!validate(config)) throw new ConfigError(`invalid DESTINATIONS: ${new Ajv().errorsText(validate.errors, { dataVar: 'DESTINATIONS' })}`)
  return (config as DestinationConfig[]).map(entry => {
    const [secret] = parseSecrets(env[entry.secretEnv], entry.secretEnv)
    if (secret === undefined) throw new ConfigError(`destination ${entry.name}: ${entry.secretEnv} is not set (a whsec_ secret to sign what it receives)`)
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
  return {
    name: entry.name,
    matches: (provider, eventType) => (entry.providers === undefined || entry.providers.includes(provider)) && eventMatches(eventType),
    forward: async run => await limit(async () => {
      const body = Buffer.from(JSON.stringify(run.payload))
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'hookgate',
        'x-hookgate-provider': run.provider,
        ...(run.event_type === null ? {} : { 'x-hookgate-event-type': run.event_type }),
        ...signStandardWebhook(body, secret, Math.floor(Date.now() / 1000), run.run_id)
      }
      let response: Response
      try {
        response = await fetch(entry.url, { method: 'POST', headers, body, signal: AbortSignal.timeout(entry.timeoutMs) })
      } catch (err) {
        const reason = (err as Error).name === 'TimeoutError' ? `timed out after ${entry.timeoutMs} ms` : (err as Error & { cause?: Error }).cause?.message ?? (err as Error).message
        return retryLater(`destination ${entry.name}: ${reason}`)
      }
      const excerpt = (await response.text().catch(() => '')).slice(0, 1000)
      if (response.ok) return done()
      if (response.status === 409) return raiseException('destination_conflict', { destination: entry.name, status: 409, response: excerpt })
      if (response.status >= 400 && response.status < 500) return failed(`destination ${entry.name} answered ${response.status}: ${excerpt.slice(0, 200)}`)
      return retryLater(`destination ${entry.name} answered ${response.status}`)
    })
  }
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
