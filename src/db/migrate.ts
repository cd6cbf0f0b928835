import { fileURLToPath } from 'node:url'
import pg from 'pg'
import Postgrator from 'postgrator'

/** The numbered plain-SQL migrations of sql/ (same relative place from src/db and dist/db). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../sql/', import.meta.url))

/** Any fixed 64-bit number; every replica that boots at once queues on it. */
const MIGRATION_LOCK = 7_364_526_170_211

/**
 * Brings the schema to the latest version. Runs under a session-level advisory lock, so that several
 * replicas booting together apply each migration once; the others wait, then find nothing to do.
 * `target` (a version, '007'): stop there (tests build the layout of an older release with it).
 */
export async function migrate (connectionString: string, target?: string): Promise<{ from: number, to: number }> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
    // postgrator keeps its version table in ops, so the schema must exist before it looks.
    await client.query('CREATE SCHEMA IF NOT EXISTS ops')
    const postgrator = new Postgrator({
      migrationPattern: `${MIGRATIONS_DIR}/*.sql`,
      driver: 'pg',
      schemaTable: 'ops.schema_version',
      execQuery: async (query: string) => await client.query(query)
    })
    const from = await postgrator.getDatabaseVersion()
    await postgrator.migrate(target)
    return { from, to: await postgrator.getDatabaseVersion() }
  } finally {
    // Ending the session releases the lock even if the unlock itself fails.
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined)
    await client.end()
  }
}
