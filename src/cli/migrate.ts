import { join } from 'node:path'
import { loadConfig } from '../config.js'
import { migrate } from '../db/migrate.js'
import { startEmbeddedPostgres } from '../db/embedded.js'

/** `npm run migrate`: bring DATABASE_URL (or the embedded database under DATA_DIR) to the latest schema. */
const config = loadConfig()
const log = { info: () => {}, debug: () => {}, warn: (obj: object, msg: string) => { console.error(msg, obj) } }
const embedded = config.databaseUrl === undefined ? await startEmbeddedPostgres(join(config.dataDir, 'postgres'), log, [], config.dataDir) : undefined
let code = 0
try {
  const { from, to } = await migrate(config.databaseUrl ?? embedded!.connectionString)
  console.log(from === to ? `schema already at version ${to}` : `schema migrated from version ${from} to ${to}`)
} catch (err) {
  console.error(`migration failed: ${(err as Error).message}`)
  code = 1
} finally {
  await embedded?.stop()
}
process.exit(code)
