import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Ajv } from 'ajv'
import { envSchema } from 'env-schema'
import { Type, type Static } from 'typebox'
import { BootError } from './errors.js'
import { DEFAULT_CLOCK_SKEW_LIMIT_MS } from './retention.js'

/**
 * The names of providers and destinations: they become URL paths (/webhooks/<name>), metric labels
 * and parts of variable names. Written once: every schema and check below uses these.
 */
export const NAME_PATTERN = '^[a-z0-9][a-z0-9_-]*$'
export const NAME = new RegExp(NAME_PATTERN)
const NAME_BODY = NAME_PATTERN.slice(1, -1)

const Int = (options: { minimum?: number, maximum?: number, default?: number, description: string }) => Type.Integer(options)
const Str = (options: { minLength?: number, pattern?: string, default?: string, description: string }) => Type.String(options)

/**
 * Every variable of the gateway, once: its type, bounds, default and meaning. The validated
 * environment's type derives from it (Static), and so does .env.example (`npm run env:example`,
 * checked by test/config.test.ts). Providers declare their own variables (src/plugins/providers.ts).
 */
export const ENV_SCHEMA = Type.Object({
  NODE_ENV: Str({ default: 'development', description: '`development` and `test` generate missing secrets; anything else never does' }),
  PORT: Int({ minimum: 0, maximum: 65535, default: 3000, description: 'port to listen on' }),
  HOST: Str({ minLength: 1, default: '0.0.0.0', description: 'address to listen on' }),
  DATABASE_URL: Type.Optional(Str({ pattern: '^postgres(ql)?://', description: 'postgres://… of the server to use; unset: embedded PostgreSQL under DATA_DIR' })),
  DATABASE_READ_URL: Type.Optional(Str({ pattern: '^postgres(ql)?://', description: 'a read replica of DATABASE_URL for the admin API\'s lists and run pages (they may lag the primary); unset: DATABASE_URL' })),
  DATA_DIR: Str({ minLength: 1, default: './.data', description: 'embedded database and development secrets' }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info', description: 'fatal, error, warn, info, debug, trace or silent' }),
  LOG_TRANSPORT: Type.Optional(Str({ minLength: 1, description: 'a pino transport, JSON inline or a file ({"target":"pino/file","options":{...}})' })),
  WEBHOOK_PROVIDERS: Type.Optional(Str({ pattern: `^\\s*${NAME_BODY}(\\s*,\\s*${NAME_BODY})*\\s*$`, description: 'comma-separated providers to enable; unset: every provider whose secret is set (outside production: all)' })),
  BODY_LIMIT_BYTES: Int({ minimum: 1, maximum: 104857600, default: 1048576, description: 'largest accepted body; larger is a 413' }),
  PUBLIC_BASE_URL: Type.Optional(Str({ pattern: '^https?://[^/?#]+(/[^?#]*)?$', description: 'the origin senders post to (https://hooks.example.com): Twilio signs the URL it requested' })),
  TRUST_PROXY: Str({ pattern: '^(true|false|\\d+|[0-9a-fA-F.:/]+(\\s*,\\s*[0-9a-fA-F.:/]+)*)$', default: 'false', description: 'believe X-Forwarded-* from: true, a hop count (1), or addresses/CIDRs (10.0.0.0/8,127.0.0.1)' }),
  DB_POOL_MAX: Int({ minimum: 1, maximum: 1000, default: 10, description: 'PostgreSQL connections per replica for the worker, audits and admin (deliveries and outcomes have their own)' }),
  DB_CONNECT_TIMEOUT_MS: Int({ minimum: 100, default: 3000, description: 'waiting for a connection longer than this answers 503' }),
  DB_QUERY_TIMEOUT_MS: Int({ minimum: 100, default: 10000, description: 'statement timeout (server side, and client side + 1 s)' }),
  INGEST_BATCH_SIZE: Int({ minimum: 1, maximum: 1000, default: 100, description: 'group commit: at most this many deliveries stored by one statement' }),
  INGEST_BATCH_CONCURRENCY: Int({ minimum: 1, maximum: 100, default: 1, description: 'group commit: ingest statements in flight at once' }),
  INGEST_BATCH_LINGER_MS: Int({ minimum: 0, maximum: 50, default: 2, description: 'group commit: hold the oldest waiting delivery up to this long for company (0: send at once)' }),
  INGEST_MAX_PENDING: Int({ minimum: 1, default: 5000, description: 'deliveries waiting for their statement; past it, 503 + Retry-After' }),
  UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Int({ minimum: 0, default: 1000, description: 'event-loop lag past which deliveries get 503 + Retry-After (0: off)' }),
  UNDER_PRESSURE_MAX_HEAP_BYTES: Int({ minimum: 0, default: 0, description: 'heap used past which deliveries get 503 (0: off)' }),
  UNVERIFIED_BODY_BUDGET_BYTES: Int({ minimum: 0, default: 67108864, description: 'bytes of delivery bodies held before their signature is checked, per process; past it, 503 + Retry-After before the body is read (a delivery alone is always taken; 0: off)' }),
  AUTH_FAILURE_LIMIT: Int({ minimum: 0, default: 100, description: 'refusals and payload conflicts per client (IPv4 address, IPv6 /64) per window before it gets 429 (0: off)' }),
  ADMIN_SIGN_IN_LIMIT: Int({ minimum: 0, default: 10, description: 'failed admin API and console sign-ins per client per AUTH_FAILURE_WINDOW_MS before it gets 429 (a bucket apart from webhook refusals; 0: off)' }),
  AUTH_FAILURE_WINDOW_MS: Int({ minimum: 1000, default: 60000, description: 'the window of AUTH_FAILURE_LIMIT' }),
  METRICS_PORT: Type.Optional(Int({ minimum: 0, maximum: 65535, description: 'serve /metrics on this port only (on HOST) instead of the public one' })),
  METRICS_PUBLIC: Type.Optional(Type.Enum(['true', 'false'], { description: 'serve /metrics on the public port (default: outside production only; in production use METRICS_PORT)' })),
  HTTP_REQUEST_TIMEOUT_MS: Int({ minimum: 1000, default: 30000, description: 'a whole request must arrive within this (headers within 10 s)' }),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: Int({ minimum: 1000, default: 65000, description: 'idle keep-alive sockets are closed after this' }),
  SHUTDOWN_TIMEOUT_MS: Int({ minimum: 0, default: 10000, description: 'after SIGTERM (and the drain), in-flight work gets this long before the process is forced out' }),
  DRAIN_DELAY_MS: Int({ minimum: 0, default: 0, description: 'after SIGTERM, /readyz answers 503 and deliveries are still served this long' }),
  PROVIDERS_CONFIG: Type.Optional(Str({ minLength: 1, description: 'no-code providers: a JSON file, or the JSON array itself (docs/providers/README.md)' })),
  ROLE: Type.Enum(['all', 'ingest', 'worker'], { default: 'all', description: 'all, ingest (receive only) or worker (process only)' }),
  WORKER_CONCURRENCY: Int({ minimum: 1, maximum: 1000, default: 128, description: 'runs processed at once per replica' }),
  WORKER_LEASE_MS: Int({ minimum: 100, default: 30000, description: 'how long a claimed run stays with a worker that stops renewing it' }),
  WORKER_POLL_MS: Int({ minimum: 10, default: 1000, description: 'poll interval besides LISTEN/NOTIFY (retries coming due, expired leases)' }),
  WORKER_LINGER_MS: Int({ minimum: 0, maximum: 1000, default: 20, description: 'a finished run waits this long for company before its outcome is written' }),
  BULK_RETRY_PER_SECOND: Int({ minimum: 1, maximum: 100000, default: 50, description: 'a bulk retry from the console queues its runs due one after another at this rate, so live deliveries keep their turn' }),
  WORKER_MAX_ATTEMPTS: Int({ minimum: 1, default: 8, description: 'attempts before a run is failed' }),
  WORKER_RETRY_BASE_MS: Int({ minimum: 1, default: 5000, description: 'backoff between attempts: base' }),
  WORKER_RETRY_MAX_MS: Int({ minimum: 1, default: 3600000, description: 'backoff between attempts: ceiling' }),
  DESTINATIONS: Type.Optional(Str({ minLength: 1, description: 'forwarding targets: a JSON file or the JSON array (docs/processing.md)' })),
  RETENTION_DAYS: Int({ minimum: 1, maximum: 3650, default: 30, description: 'completed and ignored runs, with their history, are dropped (a partition per day) this many days after their day ends' }),
  RETENTION_REVIEW_DAYS: Int({ minimum: 1, maximum: 3650, default: 30, description: 'failed runs are kept this long after they failed, runs with an exception this long after it closed (an open one: for ever)' }),
  RETENTION_REFUSALS_DAYS: Int({ minimum: 1, maximum: 3650, default: 7, description: 'deliveries that made no run (refusals, handshakes) are dropped after this many days' }),
  DEDUP_DAYS: Int({ minimum: 1, maximum: 3650, default: 30, description: 'an idempotency key is remembered this long, run or no run: a later delivery of it is new (at least RETENTION_DAYS)' }),
  CLOCK_SKEW_LIMIT_MS: Int({ minimum: 1000, default: DEFAULT_CLOCK_SKEW_LIMIT_MS, description: "a replica whose clock differs from the database's by more than this skips its retention passes and says so (log, metric)" }),
  RETENTION_INTERVAL_MS: Int({ minimum: 1000, default: 3600000, description: 'how often a replica runs retention and creates partitions ahead (one replica at a time)' }),
  ADMIN_TOKEN: Type.Optional(Str({ minLength: 16, description: 'bearer token of the admin API and the console\'s sign-in (16+ characters); unset: neither (in development one is generated)' })),
  PROVIDERS_DIR: Type.Optional(Str({ minLength: 1, description: 'a folder of drop-in provider files, loaded at boot' }))
})

type RawEnv = Static<typeof ENV_SCHEMA>

/**
 * .env.example: every variable of ENV_SCHEMA with its meaning, commented out at its default. The
 * providers' variables follow the pattern in the README (`<NAME>_...`).
 */
export function envExample (): string {
  const lines = ['# hookgate configuration: every variable, at its default (generated from src/config.ts: npm run env:example).', '']
  for (const [name, property] of Object.entries(ENV_SCHEMA.properties) as Array<[string, { description?: string, default?: unknown }]>) {
    lines.push(`# ${property.description ?? ''}`, `# ${name}=${property.default === undefined ? '' : String(property.default)}`, '')
  }
  lines.push('# Providers: <NAME>_WEBHOOK_SECRET (or the variable a provider declares) and <NAME>_TOLERANCE_SECONDS.', '# STRIPE_WEBHOOK_SECRET=', '')
  return lines.join('\n')
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

const settings = new Ajv({ useDefaults: true, allErrors: true })

/**
 * The validator of a JSON setting (PROVIDERS_CONFIG, DESTINATIONS): defaults filled in, and every
 * error in one boot message that names the setting and the field (`invalid DESTINATIONS:
 * DESTINATIONS/0 must have required property 'url'`), as validateEnv does for variables.
 */
export function settingValidator<T> (variable: string, schema: object): (data: unknown) => T {
  const validate = settings.compile(schema)
  return data => {
    if (!validate(data)) throw new ConfigError(`invalid ${variable}: ${settings.errorsText(validate.errors, { dataVar: variable })}`)
    return data as T
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

/**
 * The gateway's configuration, read from the environment once at boot: ENV_SCHEMA's variables,
 * validated, shaped for the plugins that use them. Provider-specific variables (secrets, tolerances)
 * are declared by each provider and validated when it registers (src/plugins/providers.ts), with the
 * same validator and the same kind of message.
 */
export type Config = ReturnType<typeof loadConfig>

/** A pino transport (`{ target, options }` or `{ targets: [...] }`) to ship logs without code. */
export interface LogTransport { target?: string, targets?: unknown[], options?: unknown }

/** Forwarded headers are believed only from these proxies: none, all, N hops, or addresses/CIDRs. */
export type TrustProxy = boolean | string[] | ((address: string, hop: number) => boolean)

/** Reads and validates the configuration; throws a ConfigError that names the variable. */
export function loadConfig (env: Record<string, string | undefined> = process.env) {
  const clean = withoutEmpty(env)
  const raw = validateEnv<RawEnv>(ENV_SCHEMA, clean)
  return {
    nodeEnv: raw.NODE_ENV,
    // Only development and test generate secrets and relax checks: `staging`, `prod`, anything else is production.
    production: raw.NODE_ENV !== 'development' && raw.NODE_ENV !== 'test',
    port: raw.PORT,
    host: raw.HOST,
    databaseUrl: raw.DATABASE_URL,
    databaseReadUrl: readReplica(raw.DATABASE_READ_URL, raw.DATABASE_URL),
    dataDir: resolve(raw.DATA_DIR),
    logLevel: raw.LOG_LEVEL,
    logTransport: raw.LOG_TRANSPORT === undefined ? undefined : logTransport(raw.LOG_TRANSPORT),
    webhookProviders: raw.WEBHOOK_PROVIDERS?.split(',').map(name => name.trim()),
    bodyLimitBytes: raw.BODY_LIMIT_BYTES,
    publicBaseUrl: raw.PUBLIC_BASE_URL?.replace(/\/+$/, ''),
    trustProxy: parseTrustProxy(raw.TRUST_PROXY, raw.NODE_ENV !== 'development' && raw.NODE_ENV !== 'test'),
    dbPoolMax: raw.DB_POOL_MAX,
    dbConnectTimeoutMs: raw.DB_CONNECT_TIMEOUT_MS,
    dbQueryTimeoutMs: raw.DB_QUERY_TIMEOUT_MS,
    // Group commit of deliveries: at most `size` per statement, at most `concurrency` statements at
    // once, a lone delivery held at most `lingerMs` for company.
    ingestBatch: { size: raw.INGEST_BATCH_SIZE, concurrency: raw.INGEST_BATCH_CONCURRENCY, lingerMs: raw.INGEST_BATCH_LINGER_MS, maxPending: raw.INGEST_MAX_PENDING },
    // Load shedding (0 = off) and the limit on refusals per client (0 = off).
    protection: {
      maxEventLoopDelayMs: raw.UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
      maxHeapBytes: raw.UNDER_PRESSURE_MAX_HEAP_BYTES,
      unverifiedBodyBytes: raw.UNVERIFIED_BODY_BUDGET_BYTES,
      authFailureLimit: raw.AUTH_FAILURE_LIMIT,
      authFailureWindowMs: raw.AUTH_FAILURE_WINDOW_MS,
      signInLimit: raw.ADMIN_SIGN_IN_LIMIT
    },
    metricsPort: raw.METRICS_PORT,
    // In production the public listener keeps /metrics (queue depth, providers, refusal rates) to
    // itself unless asked: METRICS_PORT, or METRICS_PUBLIC=true.
    metricsPublic: raw.METRICS_PUBLIC === undefined ? raw.NODE_ENV === 'development' || raw.NODE_ENV === 'test' : raw.METRICS_PUBLIC === 'true',
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
    bulkRetryPerSecond: raw.BULK_RETRY_PER_SECOND,
    retention: retentionSettings(raw),
    // The validated environment, for the providers' own variables.
    env: Object.freeze(clean) as Readonly<Record<string, string | undefined>>
  }
}

/** Keys are remembered at least as long as the runs they identify: a run that exists is always found by its key. */
function retentionSettings (raw: RawEnv) {
  if (raw.DEDUP_DAYS < raw.RETENTION_DAYS) throw new ConfigError(`DEDUP_DAYS (${raw.DEDUP_DAYS}) must be at least RETENTION_DAYS (${raw.RETENTION_DAYS}): a run's key must outlive it`)
  return {
    retentionDays: raw.RETENTION_DAYS,
    reviewDays: raw.RETENTION_REVIEW_DAYS,
    refusalsDays: raw.RETENTION_REFUSALS_DAYS,
    dedupDays: raw.DEDUP_DAYS,
    intervalMs: raw.RETENTION_INTERVAL_MS,
    maxClockSkewMs: raw.CLOCK_SKEW_LIMIT_MS
  }
}

/** A read replica is a replica of DATABASE_URL's server: the embedded database has none. */
function readReplica (readUrl: string | undefined, databaseUrl: string | undefined): string | undefined {
  if (readUrl !== undefined && databaseUrl === undefined) throw new ConfigError('DATABASE_READ_URL is a replica of DATABASE_URL: set DATABASE_URL too (the embedded database has no replica)')
  return readUrl
}

/** LOG_TRANSPORT: inline JSON or a JSON file, read at boot (the logger exists before anything async). */
function logTransport (value: string): LogTransport {
  let parsed: unknown
  try {
    parsed = JSON.parse(/^\s*\{/.test(value) ? value : readFileSync(value, 'utf8'))
  } catch (err) {
    throw new ConfigError(`LOG_TRANSPORT: ${(err as Error).message}`)
  }
  const transport = parsed as LogTransport
  if (parsed === null || typeof parsed !== 'object' || (typeof transport.target !== 'string' && !Array.isArray(transport.targets))) {
    throw new ConfigError('LOG_TRANSPORT must be a pino transport: {"target": "...", "options": {...}} or {"targets": [...]}')
  }
  return transport
}

/**
 * `true` believes every X-Forwarded-For hop: a client then names its own address, rotates it, and
 * walks around every per-client limit (110 wrong admin sign-ins, all 401, then the right token). In
 * production the balancer is named instead, by hop count or address.
 */
function parseTrustProxy (value: string, production: boolean): TrustProxy {
  if (value === 'true' && production) {
    throw new ConfigError('TRUST_PROXY=true believes any X-Forwarded-For a client sends (it could rotate its way around every limit): give the hops of your balancers (1) or their addresses (10.0.0.0/8)')
  }
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
