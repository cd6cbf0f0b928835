// One embedded PostgreSQL for a whole `npm test` run (started by test/setup/before.mjs, stopped by
// test/setup/after.mjs): each test file still gets databases of its own on it (test/helper.ts), but
// no file waits for an initdb. Stays alive until SIGTERM; its address is in STATE_FILE meanwhile.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startEmbeddedPostgres } from '../../dist/db/embedded.js'

const stateFile = process.argv[2]
const dir = await mkdtemp(join(tmpdir(), 'hookgate-test-pg-'))
const quiet = { info () {}, debug () {}, warn () {} }
const server = await startEmbeddedPostgres(dir, quiet, ['-c', 'fsync=off', '-c', 'max_connections=300'])
// Written whole, then renamed: before.mjs waits for the file to exist and must never read half of it.
await writeFile(`${stateFile}.partial`, JSON.stringify({ url: server.connectionString, pid: process.pid }))
await rename(`${stateFile}.partial`, stateFile)

let stopping = false
async function stop () {
  if (stopping) return
  stopping = true
  await server.stop().catch(() => {})
  await rm(dir, { recursive: true, force: true })
  await rm(stateFile, { force: true })
  process.exit(0)
}
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
