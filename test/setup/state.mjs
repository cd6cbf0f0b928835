import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'

/** Where the shared test PostgreSQL's address and process id are kept while it runs. */
export const SHARED_POSTGRES_STATE = join(import.meta.dirname, '..', '..', '.tap', 'hookgate-postgres.json')

/** Stops the shared test PostgreSQL (SIGTERM to its process) and waits until it is gone. */
export async function stopShared () {
  if (!existsSync(SHARED_POSTGRES_STATE)) return
  const { pid } = JSON.parse(readFileSync(SHARED_POSTGRES_STATE, 'utf8'))
  const alive = () => { try { process.kill(pid, 0); return true } catch { return false } }
  if (alive()) process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + 30_000
  while (alive() && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
  rmSync(SHARED_POSTGRES_STATE, { force: true })
}
