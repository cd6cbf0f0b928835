import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { SENSITIVE_HEADERS } from '../src/redact.js'
import { builtInProviders } from './built-in-providers.js'
import { senders } from './senders.js'

// Adding a provider is one file in src/providers/ plus what keeps it honest. This test walks the
// folder and fails for a provider that lacks any of it: a sender written from the provider's own
// documentation or SDK (test/senders.ts), a signer for `npm run send`, its signature headers kept
// out of storage and logs, its page in docs/providers/. The property tests (provider-signatures.test.ts)
// take the same folder walk, so a new provider is fuzzed without being listed.

const root = join(import.meta.dirname, '..')
const readme = readFileSync(join(root, 'docs', 'providers', 'README.md'), 'utf8')

t.test('every provider file has what a provider needs', async t => {
  const providers = await builtInProviders()
  t.ok(providers.length >= 9, `${providers.length} provider files`)
  for (const { file, plugin } of providers) {
    const definition = plugin.provider
    t.test(file, async t => {
      t.equal(file, `${definition.name}.ts`, 'the file is named after the provider (its route is /webhooks/<name>)')
      t.ok(senders.some(sender => sender.name === definition.name), 'a sender in test/senders.ts, from the provider\'s documentation or SDK')
      t.type(definition.sign, 'function', 'a signer, for npm run send')
      t.type(definition.sampleEvent, 'function', 'a sample event, for npm run send')
      t.ok(definition.signatureHeaders.length > 0, 'names the headers that carry its signature or key')
      for (const header of definition.signatureHeaders) {
        t.equal(header, header.toLowerCase(), `${header}: lower case, as Node hands headers over`)
        t.ok(SENSITIVE_HEADERS.has(header), `${header} is redacted from logs (src/redact.ts)`)
      }
      t.ok(existsSync(join(root, 'docs', 'providers', `${definition.name}.md`)), `docs/providers/${definition.name}.md`)
      t.match(readme, `${definition.name}.md`, 'listed in docs/providers/README.md')
    })
  }
})
