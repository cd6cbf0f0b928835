import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { tempDir } from './helper.js'

/** The processing tests' provider (test/fixtures/jobs-provider.mjs): an API key and a handler per outcome. */
export const JOBS_KEY = 'jobs-test-key-0123456789'

/** A folder holding the test provider (test/fixtures/jobs-provider.mjs), for PROVIDERS_DIR. */
export async function jobsProviderDir (t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t)
  await copyFile(join(import.meta.dirname, 'fixtures', 'jobs-provider.mjs'), join(dir, 'jobs.mjs'))
  return dir
}

export async function deliverJob (app: FastifyInstance, event: Record<string, unknown>) {
  return await app.inject({ method: 'POST', url: '/webhooks/jobs', headers: { 'content-type': 'application/json', 'x-test-key': JOBS_KEY }, payload: JSON.stringify(event) })
}

export async function waitFor<T> (check: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}
