import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Development secrets: generated on the first boot outside production for every provider without
 * a configured secret, kept in DATA_DIR so that restarts and `npm run send` agree. Never in production.
 */
export function devSecretsFile (dataDir: string): string {
  return join(dataDir, 'dev-secrets.json')
}

export function readDevSecrets (dataDir: string): Record<string, string> {
  try {
    return JSON.parse(readFileSync(devSecretsFile(dataDir), 'utf8')) as Record<string, string>
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
}

/** The development secret kept under `variable`, generated and saved on first use. */
export function devSecret (dataDir: string, variable: string, generate: () => string = () => randomBytes(24).toString('base64url')): string {
  const secrets = readDevSecrets(dataDir)
  const existing = secrets[variable]
  if (existing !== undefined) return existing
  secrets[variable] = generate()
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(devSecretsFile(dataDir), JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 })
  return secrets[variable]
}
