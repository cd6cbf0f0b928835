import fp from 'fastify-plugin'
import { ConfigError, NAME, validateEnv, type Config } from '../config.js'
import { devSecret } from '../dev-secrets.js'
import type { ProviderDefinition, ProviderRoute } from '../provider.js'

/**
 * Which providers are enabled, with which secrets. Every provider plugin asks `enable()` at
 * registration; `assertEnabled()` runs once they are all loaded. The rules:
 * - WEBHOOK_PROVIDERS set: exactly those, each one must have its secret (in production).
 * - WEBHOOK_PROVIDERS unset: every provider whose secret is set.
 * - Outside production a provider without a secret gets a generated development secret.
 * - Production with no provider enabled does not boot.
 */
export interface ProviderRegistry {
  enable: (definition: ProviderDefinition<any>) => ProviderRoute | undefined
  assertEnabled: () => void
  readonly enabled: ReadonlyMap<string, ProviderRoute>
  /** Every provider loaded, enabled or not: a stored run is processed even if its provider was disabled since. */
  readonly definitions: ReadonlyMap<string, ProviderDefinition<any>>
  /** Development secrets in use, by variable name (printed at boot, outside production only). */
  readonly generatedSecrets: ReadonlyMap<string, { provider: string, secret: string }>
}

declare module 'fastify' {
  interface FastifyInstance {
    providers: ProviderRegistry
  }
}

export function createProviderRegistry (config: Config): ProviderRegistry {
  const enabled = new Map<string, ProviderRoute>()
  const generatedSecrets = new Map<string, { provider: string, secret: string }>()
  const definitions = new Map<string, ProviderDefinition<any>>()
  const listed = config.webhookProviders

  return {
    enabled,
    definitions,
    generatedSecrets,
    enable (definition) {
      const { name, secretEnv } = definition
      if (!NAME.test(name)) throw new ConfigError(`provider name "${name}" must be lowercase letters, digits, - and _`)
      if (definitions.has(name)) throw new ConfigError(`two providers are named "${name}"`)
      definitions.set(name, definition)
      if (listed !== undefined && !listed.includes(name)) return undefined

      const toleranceEnv = `${name.toUpperCase().replaceAll('-', '_')}_TOLERANCE_SECONDS`
      const settings = validateEnv<Record<string, string | number | undefined>>({
        type: 'object',
        properties: {
          [secretEnv]: { type: 'string' },
          [toleranceEnv]: { type: 'integer', minimum: 0, maximum: 31536000, default: definition.toleranceSeconds ?? 300 }
        }
      }, config.env)

      let secrets = parseSecrets(settings[secretEnv] as string | undefined, secretEnv)
      if (secrets.length === 0) {
        if (config.production) {
          if (listed === undefined) return undefined
          throw new ConfigError(`${name} is enabled by WEBHOOK_PROVIDERS but ${secretEnv} is not set`)
        }
        const secret = devSecret(config.dataDir, secretEnv, definition.generateSecret)
        generatedSecrets.set(secretEnv, { provider: name, secret })
        secrets = [secret]
      }
      const route: ProviderRoute = { definition, secrets, toleranceSeconds: settings[toleranceEnv] as number }
      enabled.set(name, route)
      return route
    },
    assertEnabled () {
      const unknown = (listed ?? []).filter(name => !definitions.has(name))
      if (unknown.length > 0) {
        throw new ConfigError(`WEBHOOK_PROVIDERS names unknown provider(s): ${unknown.join(', ')} (known: ${[...definitions.keys()].join(', ')})`)
      }
      if (enabled.size === 0) {
        throw new ConfigError('no webhook provider is enabled: set a provider secret (for example STRIPE_WEBHOOK_SECRET) and WEBHOOK_PROVIDERS')
      }
    }
  }
}

/**
 * One secret, several comma-separated ones while rotating (`new,old`), or a JSON array of strings
 * for secrets that themselves contain commas or spaces (`["a,b", "c d"]`).
 */
export function parseSecrets (value: string | undefined, variable: string): string[] {
  if (value === undefined) return []
  const trimmed = value.trim()
  if (trimmed.startsWith('[')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(trimmed)
    } catch {
      throw new ConfigError(`invalid configuration: ${variable} starts with "[" but is not a JSON array of strings`)
    }
    if (!Array.isArray(parsed) || parsed.some(s => typeof s !== 'string' || s === '')) {
      throw new ConfigError(`invalid configuration: ${variable} must be a JSON array of non-empty strings`)
    }
    return parsed as string[]
  }
  return trimmed.split(',').map(s => s.trim()).filter(s => s !== '')
}

export default fp(async function providers (fastify) {
  fastify.decorate('providers', createProviderRegistry(fastify.config))
}, { name: 'providers', decorators: { fastify: ['config'] } })
