import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { envSchema } from 'env-schema'
import { BootError } from './errors.js'

/**
 * The names of providers and destinations: they become URL paths (/webhooks/<name>), metric labels
 * and parts of variable names. Written once: every schema and check below uses these.
 */
export const NAME_PATTERN = '^[a-z0-9][a-z0-9_-]*$'
export const NAME = new RegExp(NAME_PATTERN)
const NAME_BODY = NAME_PATTERN.slice(1, -1)

/**
 * The gateway's configuration, read from the environment once at boot.
 * Provider-specific variables (secrets, tolerances) are declared by each provider and validated
 * when it registers (src/plugins/providers.ts), with the same validator and the same kind of message.
 */
export interface Config {
  nodeEnv: string
  production: boolean
  port: number
  host: string
  /** Unset: an embedded PostgreSQL is started with its data under `dataDir`. */
  databaseUrl: string | undefined
  dataDir: string
  logLevel: string
  /** A pino transport (`{ target, options }` or `{ targets: [...] }`) to ship logs without code; default JSON on stdout. */
  logTransport: { target?: string, targets?: unknown[], options?: unknown } | undefined
  /** Unset: every provider that has a secret (or, outside production, every provider). */
  webhookProviders: string[] | undefined
  bodyLimitBytes: number
  /** The public origin senders post to (`https://hooks.example.com`), for senders that sign the URL (Twilio). */
  publicBaseUrl: string | undefined
  /** Forwarded headers are believed only from these proxies: none, all, N hops, or addresses/CIDRs. */
  trustProxy: boolean | string[] | ((address: string, hop: number) => boolean)
  dbPoolMax: number
  dbConnectTimeoutMs: number
  dbQueryTimeoutMs: number
  /** Group commit of deliveries: at most `size` per statement, at most `concurrency` statements at once, a lone delivery held at most `lingerMs` for company. */
  ingestBatch: { size: number, concurrency: number, lingerMs: number, maxPending: number }
  /** Load shedding (0 = off) and the limit on authentication failures per client IP (0 = off). */
  protection: { maxEventLoopDelayMs: number, maxHeapBytes: number, authFailureLimit: number, authFailureWindowMs: number }
  /** /metrics on its own port (on HOST) instead of the public one. */
  metricsPort: number | undefined
  /** Against slow clients: a whole request (headers and body) within requestTimeoutMs; idle keep-alive sockets closed after keepAliveTimeoutMs. */
  http: { requestTimeoutMs: number, keepAliveTimeoutMs: number }
  shutdownTimeoutMs: number
  /** After SIGTERM: /readyz answers 503 at once, deliveries are still served this long, then the server closes. */
  drainDelayMs: number
  /** No-code providers: a JSON file, or the JSON array itself. */
  providersConfig: string | undefined
  /** Drop-in provider files, loaded after the built-in ones (mount it into the image). */
  providersDir: string | undefined
  /** `all` (default): receive and process; `ingest`: receive only; `worker`: process only (`hookgate worker`). */
  role: 'all' | 'ingest' | 'worker'
  worker: { concurrency: number, leaseMs: number, pollMs: number, lingerMs: number, maxAttempts: number, retryBaseMs: number, retryMaxMs: number }
  /** Forwarding destinations: a JSON file, or the JSON array itself. */
  destinations: string | undefined
  /** Bearer token of the admin API; unset: no admin routes. */
  adminToken: string | undefined
  /** The validated environment, for the providers' own variables. */
  env: Readonly<Record<string, string | undefined>>
}

const schema = {
  type: 'object',
  properties: {
    NODE_ENV: { type: 'string', default: 'development' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 3000 },
    HOST: { type: 'string', minLength: 1, default: '0.0.0.0' },
    DATABASE_URL: { type: 'string', pattern: '^postgres(ql)?://' },
    DATA_DIR: { type: 'string', minLength: 1, default: './.data' },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    LOG_TRANSPORT: { type: 'string', minLength: 1 },
    WEBHOOK_PROVIDERS: { type: 'string', pattern: `^\\s*${NAME_BODY}(\\s*,\\s*${NAME_BODY})*\\s*$` },
    BODY_LIMIT_BYTES: { type: 'integer', minimum: 1, maximum: 104857600, default: 1048576 },
    PUBLIC_BASE_URL: { type: 'string', pattern: '^https?://[^/?#]+(/[^?#]*)?$' },
    TRUST_PROXY: { type: 'string', pattern: '^(true|false|\\d+|[0-9a-fA-F.:/]+(\\s*,\\s*[0-9a-fA-F.:/]+)*)$', default: 'false' },
    DB_POOL_MAX: { type: 'integer', minimum: 1, maximum: 1000, default: 10 },
    DB_CONNECT_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 3000 },
    DB_QUERY_TIMEOUT_MS: { type: 'integer', minimum: 100, default: 10000 },
    INGEST_BATCH_SIZE: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    INGEST_BATCH_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
    INGEST_BATCH_LINGER_MS: { type: 'integer', minimum: 0, maximum: 50, default: 0 },
    INGEST_MAX_PENDING: { type: 'integer', minimum: 1, default: 5000 },
    UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: { type: 'integer', minimum: 0, default: 1000 },
    UNDER_PRESSURE_MAX_HEAP_BYTES: { type: 'integer', minimum: 0, default: 0 },
    AUTH_FAILURE_LIMIT: { type: 'integer', minimum: 0, default: 100 },
    AUTH_FAILURE_WINDOW_MS: { type: 'integer', minimum: 1000, default: 60000 },
    METRICS_PORT: { type: 'integer', minimum: 0, maximum: 65535 },
    HTTP_REQUEST_TIMEOUT_MS: { type: 'integer', minimum: 1000, default: 30000 },
    HTTP_KEEP_ALIVE_TIMEOUT_MS: { type: 'integer', minimum: 1000, default: 65000 },
    SHUTDOWN_TIMEOUT_MS: { type: 'integer', minimum: 0, default: 10000 },
    DRAIN_DELAY_MS: { type: 'integer', minimum: 0, default: 0 },
    PROVIDERS_CONFIG: { type: 'string', minLength: 1 },
    ROLE: { type: 'string', enum: ['all', 'ingest', 'worker'], default: 'all' },
    WORKER_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 1000, default: 128 },
    WORKER_LEASE_MS: { type: 'integer', minimum: 100, default: 30000 },
    WORKER_POLL_MS: { type: 'integer', minimum: 10, default: 1000 },
    WORKER_LINGER_MS: { type: 'integer', minimum: 0, maximum: 1000, default: 20 },
    WORKER_MAX_ATTEMPTS: { type: 'integer', minimum: 1, default: 8 },
    WORKER_RETRY_BASE_MS: { type: 'integer', minimum: 1, default: 5000 },
    WORKER_RETRY_MAX_MS: { type: 'integer', minimum: 1, default: 3600000 },
    DESTINATIONS: { type: 'string', minLength: 1 },
    ADMIN_TOKEN: { type: 'string', minLength: 16 },
    PROVIDERS_DIR: { type: 'string', minLength: 1 }
  }
} as const

interface RawEnv {
  NODE_ENV: string
  PORT: number
  HOST: string
  DATABASE_URL?: string
  DATA_DIR: string
  LOG_LEVEL: string
  LOG_TRANSPORT?: string
  WEBHOOK_PROVIDERS?: string
  BODY_LIMIT_BYTES: number
  PUBLIC_BASE_URL?: string
  TRUST_PROXY: string
  DB_POOL_MAX: number
  DB_CONNECT_TIMEOUT_MS: number
  DB_QUERY_TIMEOUT_MS: number
  INGEST_BATCH_SIZE: number
  INGEST_BATCH_CONCURRENCY: number
  INGEST_BATCH_LINGER_MS: number
  INGEST_MAX_PENDING: number
  UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: number
  UNDER_PRESSURE_MAX_HEAP_BYTES: number
  AUTH_FAILURE_LIMIT: number
  AUTH_FAILURE_WINDOW_MS: number
  METRICS_PORT?: number
  HTTP_REQUEST_TIMEOUT_MS: number
  HTTP_KEEP_ALIVE_TIMEOUT_MS: number
  SHUTDOWN_TIMEOUT_MS: number
  DRAIN_DELAY_MS: number
  PROVIDERS_CONFIG?: string
  ROLE: 'all' | 'ingest' | 'worker'
  WORKER_CONCURRENCY: number
  WORKER_LEASE_MS: number
  WORKER_POLL_MS: number
  WORKER_LINGER_MS: number
  WORKER_MAX_ATTEMPTS: number
  WORKER_RETRY_BASE_MS: number
  WORKER_RETRY_MAX_MS: number
  DESTINATIONS?: string
  ADMIN_TOKEN?: string
  PROVIDERS_DIR?: string
}

/** Validates `data` against a JSON schema of environment variables; the error names the variable. */
export function validateEnv<T> (schema: object, data: Record<string, string | undefined>): T {
  try {
    return envSchema<T>({ schema, data: withoutEmpty(data), dotenv: false, env: false })
  } catch (err) {
    // Ajv says "env/PORT must be integer"; say it the way an operator reads it.
    const message = (err as Error).message.replace(/env\/(\w+)/g, '$1')
    throw new ConfigError(`invalid configuration: ${message}`)
  }
}

/**
 * A JSON setting (PROVIDERS_CONFIG, DESTINATIONS): the JSON itself when it starts with `[` or `{`,
 * else the path of a JSON file. A file that cannot be read or JSON that cannot be parsed is a boot error.
 */
export async function readJsonSetting (variable: string, value: string): Promise<unknown> {
  const text = /^\s*[[{]/.test(value)
    ? value
    : await readFile(value, 'utf8').catch((err: Error) => {
      throw new ConfigError(`${variable}: cannot read ${value}: ${err.message}`)
    })
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new ConfigError(`${variable} is not valid JSON: ${(err as Error).message}`)
  }
}

export class ConfigError extends BootError {
  override name = 'ConfigError'
}

/** Reads and validates the configuration; throws a ConfigError that names the variable. */
export function loadConfig (env: Record<string, string | undefined> = process.env): Config {
  const clean = withoutEmpty(env)
  const raw = validateEnv<RawEnv>(schema, clean)
  return {
    nodeEnv: raw.NODE_ENV,
    // Only development and test generate secrets and relax checks: `staging`, `prod`, anything else is production.
    production: raw.NODE_ENV !== 'development' && raw.NODE_ENV !== 'test',
    port: raw.PORT,
    host: raw.HOST,
    databaseUrl: raw.DATABASE_URL,
    dataDir: resolve(raw.DATA_DIR),
    logLevel: raw.LOG_LEVEL,
    logTransport: raw.LOG_TRANSPORT === undefined ? undefined : logTransport(raw.LOG_TRANSPORT),
    webhookProviders: raw.WEBHOOK_PROVIDERS?.split(',').map(name => name.trim()),
    bodyLimitBytes: raw.BODY_LIMIT_BYTES,
    publicBaseUrl: raw.PUBLIC_BASE_URL?.replace(/\/+$/, ''),
    trustProxy: parseTrustProxy(raw.TRUST_PROXY),
    dbPoolMax: raw.DB_POOL_MAX,
    dbConnectTimeoutMs: raw.DB_CONNECT_TIMEOUT_MS,
    dbQueryTimeoutMs: raw.DB_QUERY_TIMEOUT_MS,
    ingestBatch: { size: raw.INGEST_BATCH_SIZE, concurrency: raw.INGEST_BATCH_CONCURRENCY, lingerMs: raw.INGEST_BATCH_LINGER_MS, maxPending: raw.INGEST_MAX_PENDING },
    protection: {
      maxEventLoopDelayMs: raw.UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
      maxHeapBytes: raw.UNDER_PRESSURE_MAX_HEAP_BYTES,
      authFailureLimit: raw.AUTH_FAILURE_LIMIT,
      authFailureWindowMs: raw.AUTH_FAILURE_WINDOW_MS
    },
    metricsPort: raw.METRICS_PORT,
    http: { requestTimeoutMs: raw.HTTP_REQUEST_TIMEOUT_MS, keepAliveTimeoutMs: raw.HTTP_KEEP_ALIVE_TIMEOUT_MS },
    shutdownTimeoutMs: raw.SHUTDOWN_TIMEOUT_MS,
    drainDelayMs: raw.DRAIN_DELAY_MS,
    providersConfig: raw.PROVIDERS_CONFIG,
    providersDir: raw.PROVIDERS_DIR === undefined ? undefined : resolve(raw.PROVIDERS_DIR),
    role: raw.ROLE,
    worker: {
      concurrency: raw.WORKER_CONCURRENCY,
      leaseMs: raw.WORKER_LEASE_MS,
      pollMs: raw.WORKER_POLL_MS,
      lingerMs: raw.WORKER_LINGER_MS,
      maxAttempts: raw.WORKER_MAX_ATTEMPTS,
      retryBaseMs: raw.WORKER_RETRY_BASE_MS,
      retryMaxMs: raw.WORKER_RETRY_MAX_MS
    },
    destinations: raw.DESTINATIONS,
    adminToken: raw.ADMIN_TOKEN,
    env: Object.freeze(clean)
  }
}

/** LOG_TRANSPORT: inline JSON or a JSON file, read at boot (the logger exists before anything async). */
function logTransport (value: string): Config['logTransport'] {
  let parsed: unknown
  try {
    parsed = JSON.parse(/^\s*\{/.test(value) ? value : readFileSync(value, 'utf8'))
  } catch (err) {
    throw new ConfigError(`LOG_TRANSPORT: ${(err as Error).message}`)
  }
  const transport = parsed as NonNullable<Config['logTransport']>
  if (parsed === null || typeof parsed !== 'object' || (typeof transport.target !== 'string' && !Array.isArray(transport.targets))) {
    throw new ConfigError('LOG_TRANSPORT must be a pino transport: {"target": "...", "options": {...}} or {"targets": [...]}')
  }
  return transport
}

function parseTrustProxy (value: string): Config['trustProxy'] {
  if (value === 'true') return true
  if (value === 'false') return false
  if (/^\d+$/.test(value)) {
    const hops = Number(value)
    return (_address, hop) => hop < hops
  }
  return value.split(',').map(entry => entry.trim())
}

/** An empty variable (`FOO=` in a compose file) means "not set", not "set to nothing". */
function withoutEmpty (env: Record<string, string | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== '') out[key] = value
  }
  return out
}
