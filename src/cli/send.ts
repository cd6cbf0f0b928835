import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { NAME, loadConfig } from '../config.js'
import { readDevSecrets } from '../dev-secrets.js'
import { parseSecrets } from '../plugins/providers.js'
import { isForm, type ProviderPlugin } from '../provider.js'
import { extraProviders } from '../extra-providers.js'

/**
 * `npm run send -- <provider> [--url URL] [--file event.json]`: posts a correctly signed test event to
 * a running gateway, signed with the configured secret or the development secret in DATA_DIR.
 */
const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { url: { type: 'string' }, file: { type: 'string' } }
})
const name = positionals[0]
if (name === undefined || !NAME.test(name)) {
  console.error('usage: npm run send -- <provider> [--url http://127.0.0.1:3000] [--file event.json]')
  process.exit(2)
}

const config = loadConfig()
const { provider } = await loadProvider(name)
if (provider.sign === undefined) {
  console.error(`provider ${name} cannot sign test events`)
  process.exit(2)
}
const secret = parseSecrets(config.env[provider.secretEnv], provider.secretEnv)[0] ?? readDevSecrets(config.dataDir)[provider.secretEnv]
if (secret === undefined) {
  console.error(`no secret for ${name}: set ${provider.secretEnv}, or start the gateway once outside production to generate one`)
  process.exit(2)
}

const contentType = provider.contentTypes?.[0] ?? 'application/json'
const sample = provider.sampleEvent?.() ?? {}
const raw = values.file !== undefined
  ? await readFile(values.file)
  : Buffer.from(isForm(contentType) ? new URLSearchParams(sample as Record<string, string>).toString() : JSON.stringify(sample, null, 2))
const url = `${values.url ?? `http://127.0.0.1:${config.port}`}/webhooks/${name}`
// The URL the gateway believes it was sent to (Twilio signs it): PUBLIC_BASE_URL when set.
const signedUrl = config.publicBaseUrl === undefined ? url : `${config.publicBaseUrl}/webhooks/${name}`
const response = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': contentType, ...provider.sign(raw, secret, Math.floor(Date.now() / 1000), signedUrl) },
  body: raw
})
console.log(`${response.status} ${await response.text()}`)
process.exit(response.ok ? 0 : 1)

/** A built-in provider file, else a no-code (PROVIDERS_CONFIG) or drop-in (PROVIDERS_DIR) provider. */
async function loadProvider (providerName: string): Promise<ProviderPlugin> {
  try {
    const file = join(import.meta.dirname, '..', 'providers', `${providerName}.js`)
    const module = await import(pathToFileURL(file).href) as { default: ProviderPlugin }
    return module.default
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err
  }
  const extra = (await extraProviders(config)).find(plugin => plugin.provider.name === providerName)
  if (extra !== undefined) return extra
  console.error(`unknown provider: ${providerName}`)
  process.exit(2)
}
