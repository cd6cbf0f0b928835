import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import type { IncomingMessage } from 'node:http'
import type { DestinationStream, TransportMultiOptions, TransportSingleOptions } from 'pino'
import Fastify, { LogController, type FastifyInstance, type FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import autoload from '@fastify/autoload'
import type { Config } from './config.js'
import { LOG_REDACT_PATHS } from './redact.js'
import { extraProviders } from './extra-providers.js'
import providers from './plugins/providers.js'
import database from './plugins/database.js'
import metrics from './plugins/metrics.js'
import protection from './plugins/protection.js'
import deliveryOutcome from './plugins/delivery-outcome.js'
import ingest from './plugins/ingest.js'
import verify from './plugins/verify.js'
import errors from './plugins/errors.js'
import deliveryLog from './plugins/delivery-log.js'
import health from './plugins/health.js'
import worker from './plugins/worker.js'
import retention from './plugins/retention.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

/**
 * The gateway as a plugin. Order: the app's cross-cutting plugins (database, metrics, load
 * shedding and the authentication-failure limit, ingest, the shared
 * verify hook, error answers, the delivery log line, health, the worker), then every provider file found in
 * src/providers/ (autoloaded: dropping a file there is all it takes), then the no-code providers of
 * PROVIDERS_CONFIG and the drop-in files of PROVIDERS_DIR, then the admin API and the operator console
 * (when ADMIN_TOKEN is set).
 */
const app: FastifyPluginAsync<{ config: Config }> = async function app (fastify, { config }) {
  fastify.decorate('config', config)
  fastify.addHook('onRequest', async (request, reply) => { reply.header('x-request-id', request.id) })

  await fastify.register(providers)
  await fastify.register(database)
  await fastify.register(metrics)
  await fastify.register(protection)
  await fastify.register(deliveryOutcome)
  await fastify.register(ingest)
  await fastify.register(verify)
  await fastify.register(errors)
  await fastify.register(deliveryLog)
  await fastify.register(health)
  await fastify.register(worker)
  await fastify.register(retention)

  await fastify.register(autoload, { dir: join(import.meta.dirname, 'providers') })
  for (const provider of await extraProviders(config)) await fastify.register(provider)
  if (config.adminToken !== undefined) {
    // Imported only here: a gateway without ADMIN_TOKEN does not hold the admin API, its OpenAPI
    // generator, the console's session, CSRF and headers plugins, or their schemas in memory.
    const [adminData, admin, operatorConsole] = await Promise.all([
      import('./plugins/admin-data.js'), import('./plugins/admin.js'), import('./plugins/console.js')
    ])
    await fastify.register(adminData.default)
    await fastify.register(admin.default, { prefix: '/admin' })
    await fastify.register(operatorConsole.default, { prefix: '/console' })
  }
  fastify.providers.assertEnabled()
}

const hookgate = fp(app, { name: 'hookgate' })
export default hookgate

export interface BuildOptions {
  /** Where log lines go (tests capture them); default stdout. */
  logStream?: DestinationStream
}

/** A gateway instance built from a validated configuration. `server.ts` listens; tests inject. */
export function buildApp (config: Config, options: BuildOptions = {}): FastifyInstance {
  const fastify: FastifyInstance = Fastify({
    logger: {
      level: config.logLevel,
      // Redaction happens before a line leaves the process, whatever the transport.
      redact: { paths: LOG_REDACT_PATHS, censor: '[redacted]' },
      ...(options.logStream !== undefined ? { stream: options.logStream } : logDestination(config))
    },
    // plugins/delivery-log.ts writes the one line per delivery; Fastify's own per-request lines are off.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    genReqId: requestId,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    // Behind a balancer: a request (headers and body) must arrive within requestTimeout (slow
    // clients, slowloris); idle keep-alive sockets are kept longer than a balancer's usual idle
    // timeout (60 s), so that the balancer, not hookgate, closes them (no reset on a reused socket).
    requestTimeout: config.http.requestTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // How often Node enforces those timeouts (its default, 30 s, would let a slowloris hold on that long).
    http: { connectionsCheckingInterval: 2000 },
    // While closing, plugins/health.ts answers 503 with Retry-After (Fastify's own 503 has none).
    return503OnClosing: false
  })
  // Headers alone get a shorter bound than a whole (possibly 25 MB) body.
  fastify.server.headersTimeout = Math.min(10_000, config.http.requestTimeoutMs)
  fastify.register(hookgate, { config })
  return fastify
}

/**
 * Where log lines go: LOG_TRANSPORT when set (a file, a collector); readable lines (pino-pretty)
 * when a person watches a terminal in development and pino-pretty is installed; else JSON lines on
 * stdout, for the log pipeline.
 */
function logDestination (config: Config): { transport?: TransportSingleOptions | TransportMultiOptions } {
  if (config.logTransport !== undefined) return { transport: config.logTransport as TransportSingleOptions | TransportMultiOptions }
  if (!config.production && process.stdout.isTTY && installed('pino-pretty')) {
    return { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
  }
  return {}
}

function installed (name: string): boolean {
  try {
    import.meta.resolve(name)
    return true
  } catch {
    return false
  }
}

/** The balancer's X-Request-Id when it is a sane token, else a new one. */
function requestId (request: IncomingMessage): string {
  const incoming = request.headers['x-request-id']
  return typeof incoming === 'string' && /^[\w.:-]{1,128}$/.test(incoming) ? incoming : randomUUID()
}
