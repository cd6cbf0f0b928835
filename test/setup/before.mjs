// tap's `before`: unless DATABASE_URL names a server, starts the run's shared embedded PostgreSQL
// (test/setup/shared-postgres.mjs) in a process of its own and waits until it answers.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { dirname } from 'node:path'
import { SHARED_POSTGRES_STATE, stopShared } from './state.mjs'

if (process.env.DATABASE_URL === undefined || process.env.DATABASE_URL === '') {
  await stopShared() // one left by a run that was killed before its `after`
  await mkdir(dirname(SHARED_POSTGRES_STATE), { recursive: true })
  const child = spawn(process.execPath, [new URL('shared-postgres.mjs', import.meta.url).pathname, SHARED_POSTGRES_STATE], { detached: true, stdio: 'ignore' })
  child.unref()
  const deadline = Date.now() + 120_000
  while (!existsSync(SHARED_POSTGRES_STATE)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('the shared test PostgreSQL did not start')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  JSON.parse(readFileSync(SHARED_POSTGRES_STATE, 'utf8'))
}
