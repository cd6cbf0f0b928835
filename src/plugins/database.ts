import { join } from 'node:path'
import fp from 'fastify-plugin'
import fastifyPostgres from '@fastify/postgres'
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

  const poolOptions = {
    connectionString,
    connectionTimeoutMillis: config.dbConnectTimeoutMs,
    statement_timeout: config.dbQueryTimeoutMs,
    query_timeout: config.dbQueryTimeoutMs + 1000
  }
  await fastify.register(fastifyPostgres, { ...poolOptions, max: config.dbPoolMax, application_name: 'hookgate' })
  // Deliveries get their own connections (plugins/ingest.ts): slow admin queries or a busy worker
  // never make a sender wait. Two per statement slot, for a split batch and the rare look-again.
  await fastify.register(fastifyPostgres, {
    ...poolOptions,
    name: 'ingest',
    max: 2 * config.ingestBatch.concurrency,
    application_name: 'hookgate-ingest',
    // The ingest statement is fixed and prepared: plan it once per connection. Left to itself
    // PostgreSQL re-plans it on every execution (its custom plan looks cheaper than the generic one),
    // about a fifth of its cost. A SET (PgBouncer refuses startup options), awaited by the pool
    // before the connection serves its first query (pg-pool's onConnect).
    onConnect: async (client: pg.ClientBase) => {
      await client.query('SET plan_cache_mode = force_generic_plan').catch((err: Error) => {
        fastify.log.warn({ err: { message: err.message } }, 'could not set plan_cache_mode')
      })
    }
  })
  for (const pool of [fastify.pg.pool, fastify.pg.ingest.pool]) {
    // An idle connection dropped by the server (restart, failover) must not crash the process;
    // the pool replaces it on the next query.
    // Message and code only: the error carries the whole pg client (connection parameters, statements).
    pool.on('error', err => { fastify.log.warn({ err: { message: err.message, code: (err as { code?: string }).code } }, 'idle database connection lost') })
  }
  await fastify.pg.query('SELECT 1')
}, { name: 'database', decorators: { fastify: ['config'] } })

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
