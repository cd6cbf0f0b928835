import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { ProviderPlugin } from '../src/provider.js'

/** The folder hookgate autoloads its providers from: one file per provider. */
export const PROVIDERS_DIR = join(import.meta.dirname, '..', 'src', 'providers')

/** Every provider file of src/providers/, in name order: a new file is picked up without a list to edit. */
export async function builtInProviders (): Promise<Array<{ file: string, plugin: ProviderPlugin }>> {
  const files = readdirSync(PROVIDERS_DIR).filter(file => file.endsWith('.ts')).sort()
  return await Promise.all(files.map(async file => ({ file, plugin: (await import(join(PROVIDERS_DIR, file))).default as ProviderPlugin })))
}
