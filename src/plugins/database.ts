import { join } from 'node:path'
import fp from 'fastify-plugin'
import fastifyPostgres from '@fastify/postgres'
import type { FastifyInstance } from 'fastify'
import type pg from 'pg'
import { startEmbeddedPostgres } from '../db/embedded.js'
import { migrate } from '../db/migrate.js'
import { BootError } from '../errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The server in use (DATABASE_URL or the embedded one): for connections outside the pool (LISTEN). */
    databaseUrl: string
  }
}

/**
 * PostgreSQL: the server DATABASE_URL names, or the embedded default under DATA_DIR. Migrations are
 * applied (under an advisory lock) and the connection proven before the plugin resolves, so a bad
 * DATABASE_URL fails the boot, not the first delivery.
 */
export default fp(async function database (fastify) {
  const { config } = fastify
  let connectionString = config.databaseUrl
  if (connectionString === undefined) {
    const embedded = await startEmbeddedPostgres(join(config.dataDir, 'postgres'), fastify.log, [], config.dataDir)
    connectionString = embedded.connectionString
    // Added before the pool's own hook, so the pool closes first and the server stops last.
    fastify.addHook('onClose', async () => { await embedded.stop() })
  }

  fastify.decorate('databaseUrl', connectionString)
  const version = await migrate(connectionString).catch((err: Error) => {
    // pg's messages name hosts and users, never the password; strip it anyway should one echo the URL.
    const why = err.message.split(connectionString).join(describeDatabase(connectionString))
    throw new BootError(`cannot use the database at ${describeDatabase(connectionString)}: ${why}`, { cause: err })
  })
  if (version.from !== version.to) fastify.log.info(version, 'database migrated')

  await registerPool(fastify, { max: config.dbPoolMax, applicationName: 'hookgate' })
  await fastify.pg.query('SELECT 1')
}, { name: 'database', decorators: { fastify: ['config'] } })

/**
 * A connection pool on the gateway's database, as `fastify.pg` (or `fastify.pg[name]`): the main one
 * here, the ingest plugin's own there. An idle connection dropped by the server (restart, failover)
 * must not crash the process: the pool replaces it on the next query, and the warning says so with
 * the message and code only (the error carries the whole client: connection parameters, statements).
 */
export async function registerPool (fastify: FastifyInstance, options: {
  name?: string
  max: number
  applicationName: string
  /** Another server than the gateway's database (a read replica); default fastify.databaseUrl. */
  connectionString?: string
  /** Every transaction read-only (a replica refuses writes anyway; this says so on any server). */
  readOnly?: boolean
  /**
   * Fixed, prepared statements that touch the day partitions (ingest's, the worker's outcomes'):
   * each planned once per connection. Left to itself PostgreSQL plans such a statement again on every
   * execution (a custom plan, pruned to the partitions of its parameters, looks cheaper than the
   * generic one): a fifth of the ingest statement's cost; 0.5 ms of each batch of outcomes with a
   * month of partitions. Not for every statement: the claim's generic plan is slower (plugins/worker.ts).
   * A SET: PgBouncer refuses startup options.
   */
  genericPlans?: boolean
}): Promise<pg.Pool> {
  const { config } = fastify
  const onConnect = options.genericPlans === true
    ? async (client: pg.ClientBase) => {
      await client.query('SET plan_cache_mode = force_generic_plan').catch((err: Error) => {
        fastify.log.warn({ err: { message: err.message } }, 'could not set plan_cache_mode')
      })
    }
    : undefined
  await fastify.register(fastifyPostgres, {
    connectionString: options.connectionString ?? fastify.databaseUrl,
    ...(options.readOnly === true ? { options: '-c default_transaction_read_only=on' } : {}),
    connectionTimeoutMillis: config.dbConnectTimeoutMs,
    statement_timeout: config.dbQueryTimeoutMs,
    query_timeout: config.dbQueryTimeoutMs + 1000,
    max: options.max,
    application_name: options.applicationName,
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(onConnect === undefined ? {} : { onConnect })
  })
  const pool = options.name === undefined ? fastify.pg.pool : fastify.pg[options.name].pool
  pool.on('error', err => { fastify.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'idle database connection lost') })
  return pool
}

/**
 * The server named in a boot error: scheme, user, host, port and database, never a password (in the
 * user info or a `password=` parameter) or any other parameter.
 */
export function describeDatabase (connectionString: string): string {
  try {
    const url = new URL(connectionString)
    return `${url.protocol}//${url.username === '' ? '' : `${url.username}@`}${url.host}${url.pathname}`
  } catch {
    return 'DATABASE_URL (not a valid URL)'
  }
}
