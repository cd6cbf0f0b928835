import { readdir } from 'node:fs/promises'
import { extname, join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { defineProvider, formFields, parseJson, valueAt, type ProviderDefinition, type ProviderPlugin } from './provider.js'
import * as signatures from './signatures.js'
import { hmacScheme, type HmacScheme } from './schemes/hmac.js'
import { apiKeyScheme } from './schemes/api-key.js'
import { verifyStandardWebhook, standardWebhooksProvider, standardWebhooksDefinition } from './schemes/standard-webhooks.js'
import { verifyTimestampedHeader } from './schemes/timestamped.js'
import { ConfigError, NAME_PATTERN, readJsonSetting, settingValidator } from './config.js'
import * as outcomes from './outcomes.js'

/**
 * Providers that do not live in src/providers/:
 * - no-code ones, described in PROVIDERS_CONFIG (a JSON file, or the JSON itself) and validated at boot;
 * - drop-in files in PROVIDERS_DIR (mounted into the image: no rebuild), see docs/providers/TEMPLATE.mjs.
 */
export async function extraProviders (config: { providersConfig?: string, providersDir?: string }): Promise<ProviderPlugin[]> {
  const configured = config.providersConfig === undefined ? [] : configuredProviders(await readJsonSetting('PROVIDERS_CONFIG', config.providersConfig))
  const dropIns = config.providersDir === undefined ? [] : await loadDropInProviders(config.providersDir)
  return [...configured, ...dropIns]
}

// --- no-code providers --------------------------------------------------------------------------

const location = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  properties: {
    header: { type: 'string', pattern: '^[a-z0-9-]+$' },
    path: { type: 'string', minLength: 1 }
  }
}

const providerSchema = {
  type: 'object',
  required: ['name', 'secretEnv', 'scheme', 'idempotencyKey'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN },
    secretEnv: { type: 'string', pattern: '^[A-Z][A-Z0-9_]*$' },
    scheme: { enum: ['hmac', 'standard-webhooks', 'api-key', 'basic'] },
    hmac: {
      type: 'object',
      required: ['header'],
      additionalProperties: false,
      properties: {
        algorithm: { enum: ['sha1', 'sha256', 'sha512'], default: 'sha256' },
        header: { type: 'string', pattern: '^[a-z0-9-]+$' },
        prefix: { type: 'string' },
        encoding: { enum: ['hex', 'base64'], default: 'hex' },
        signedContent: { type: 'string' },
        timestampHeader: { type: 'string', pattern: '^[a-z0-9-]+$' },
        idHeader: { type: 'string', pattern: '^[a-z0-9-]+$' }
      }
    },
    apiKey: {
      type: 'object',
      additionalProperties: false,
      properties: {
        header: { type: 'string', pattern: '^[a-z0-9-]+$' },
        prefixes: { type: 'array', items: { type: 'string', minLength: 1 } }
      }
    },
    toleranceSeconds: { type: 'integer', minimum: 0 },
    idempotencyKey: location,
    eventType: location,
    contentTypes: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^[a-z]+/[a-z0-9.+-]+$' } },
    bodyLimit: { type: 'integer', minimum: 1 }
  },
  allOf: [{ if: { properties: { scheme: { const: 'hmac' } } }, then: { required: ['hmac'] } }]
} as const

interface ProviderConfig {
  name: string
  secretEnv: string
  scheme: 'hmac' | 'standard-webhooks' | 'api-key' | 'basic'
  hmac?: HmacScheme
  apiKey?: { header?: string, prefixes?: string[] }
  toleranceSeconds?: number
  idempotencyKey: { header?: string, path?: string }
  eventType?: { header?: string, path?: string }
  contentTypes?: string[]
  bodyLimit?: number
}

const validate = settingValidator<ProviderConfig[]>('PROVIDERS_CONFIG', { type: 'array', items: providerSchema })

/** The no-code providers of a validated configuration; a bad entry is a boot error naming the field. */
export function configuredProviders (config: unknown): ProviderPlugin[] {
  return validate(config).map((entry, i) => {
    try {
      return configuredProvider(entry)
    } catch (err) {
      throw new ConfigError(`invalid PROVIDERS_CONFIG[${i}] (${entry.name}): ${(err as Error).message}`)
    }
  })
}

function configuredProvider (entry: ProviderConfig): ProviderPlugin {
  if (entry.scheme === 'standard-webhooks') return standardWebhooksProvider(entry)
  const read = (where: { header?: string, path?: string } | undefined, event: unknown, headers: Record<string, string | string[] | undefined>) =>
    where?.header !== undefined ? signatures.headerValue(headers[where.header]) : where?.path !== undefined ? valueAt(event, where.path) : undefined
  const identify: ProviderDefinition['identify'] = (event, headers) => ({
    idempotencyKey: read(entry.idempotencyKey, event, headers),
    eventType: read(entry.eventType, event, headers)
  })
  const common = {
    name: entry.name,
    secretEnv: entry.secretEnv,
    toleranceSeconds: entry.toleranceSeconds,
    contentTypes: entry.contentTypes,
    bodyLimit: entry.bodyLimit,
    identify
  }
  if (entry.scheme === 'hmac') {
    const scheme = hmacScheme(entry.hmac as HmacScheme)
    const keyHeader = entry.idempotencyKey.header
    const keySigned = keyHeader === undefined || (scheme.signsId && keyHeader === entry.hmac!.idHeader)
    const timestampHeader = scheme.signsTimestamp ? entry.hmac!.timestampHeader : undefined
    return defineProvider({
      ...common,
      // A key from a header outside the signed content: the same signed bytes under another key are a
      // replay; with a signed timestamp, only inside its tolerance (the same body sent later is new).
      replayGuard: keySigned ? undefined : 'body',
      replayStamp: timestampHeader === undefined ? undefined : headers => signatures.headerValue(headers[timestampHeader]),
      signatureHeaders: [entry.hmac!.header],
      verify: scheme.verify,
      sign: (raw, secret, now) => scheme.sign(raw, secret, now)
    })
  }
  const scheme = apiKeyScheme({ ...entry.apiKey, basic: entry.scheme === 'basic' })
  return defineProvider({
    ...common,
    signatureHeaders: [scheme.header],
    verify: (_raw, headers, secrets) => scheme.verify(headers, secrets),
    sign: (_raw, secret) => scheme.sign(secret)
  })
}

// --- drop-in files --------------------------------------------------------------------------------

/** What a drop-in file's exported function receives: the schemes and primitives, no import paths needed. */
export const kit = {
  ...signatures,
  parseJson,
  formFields,
  valueAt,
  hmacScheme,
  apiKeyScheme,
  verifyStandardWebhook,
  verifyTimestampedHeader,
  /** `export default kit => kit.standardWebhooks({ name: 'clerk', secretEnv: 'CLERK_WEBHOOK_SECRET' })` */
  standardWebhooks: standardWebhooksDefinition,
  /** What a handler returns: done(), ignore(), retryLater(), failed(), raiseException(). */
  ...outcomes
}
export type ProviderKit = typeof kit

/**
 * Every `.js`/`.mjs` file of `dir`, in name order. A file's default export is a provider definition,
 * a function `(kit) => definition`, or a plugin made with defineProvider.
 */
export async function loadDropInProviders (dir: string): Promise<ProviderPlugin[]> {
  let files: string[]
  try {
    files = (await readdir(dir)).filter(file => ['.js', '.mjs'].includes(extname(file))).sort()
  } catch (err) {
    throw new ConfigError(`PROVIDERS_DIR: cannot read ${dir}: ${(err as Error).message}`)
  }
  const plugins: ProviderPlugin[] = []
  for (const file of files) {
    const path = join(dir, file)
    const exported = ((await import(pathToFileURL(path).href)) as { default?: unknown }).default
    if (typeof exported === 'function' && 'provider' in exported) {
      plugins.push(exported as ProviderPlugin)
      continue
    }
    const definition = typeof exported === 'function' ? (exported as (k: ProviderKit) => unknown)(kit) : exported
    plugins.push(defineProvider(checkDefinition(definition, path)))
  }
  return plugins
}

function checkDefinition (value: unknown, path: string): ProviderDefinition {
  const definition = value as Partial<ProviderDefinition> | null
  const missing = [
    typeof definition?.name !== 'string' && 'name',
    typeof definition?.secretEnv !== 'string' && 'secretEnv',
    !Array.isArray(definition?.signatureHeaders) && 'signatureHeaders',
    typeof definition?.verify !== 'function' && 'verify()',
    typeof definition?.identify !== 'function' && 'identify()'
  ].filter(Boolean)
  if (missing.length > 0) throw new ConfigError(`drop-in provider ${path} must export ${missing.join(', ')} (see docs/providers/TEMPLATE.mjs)`)
  return definition as ProviderDefinition
}
