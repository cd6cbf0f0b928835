import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../src/config.js'
import { parseSecrets } from '../src/plugins/providers.js'
import { build, stripeEvent, stripeSignature, tempDir } from './helper.js'

t.test('an invalid value is a boot error that names the variable', async t => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /PORT must be integer/],
    [{ PORT: '70000' }, /PORT must be <= 65535/],
    [{ BODY_LIMIT_BYTES: '0' }, /BODY_LIMIT_BYTES must be >= 1/],
    [{ DATABASE_URL: 'mysql://localhost/db' }, /DATABASE_URL must match pattern/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be equal to one of the allowed values/],
    [{ WEBHOOK_PROVIDERS: 'stripe, Git Hub' }, /WEBHOOK_PROVIDERS must match pattern/],
    [{ TRUST_PROXY: 'yes please' }, /TRUST_PROXY must match pattern/],
    [{ TRUST_PROXY: 'true', NODE_ENV: 'production' }, /TRUST_PROXY=true believes any X-Forwarded-For a client sends/],
    [{ DB_POOL_MAX: '0' }, /DB_POOL_MAX must be >= 1/]
  ]
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message }, Object.keys(env)[0])
  }
})

t.test('defaults, and an empty variable means unset', async t => {
  const config = loadConfig({ PORT: '', DATABASE_URL: '' })
  t.match(config, { port: 3000, host: '0.0.0.0', databaseUrl: undefined, logLevel: 'info', bodyLimitBytes: 1048576, production: false, trustProxy: false })
  t.match(config.dataDir, /\.data$/)
  t.same(loadConfig({ WEBHOOK_PROVIDERS: ' stripe , github ' }).webhookProviders, ['stripe', 'github'])
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }).trustProxy, ['10.0.0.0/8', '127.0.0.1'])
  const hops = loadConfig({ TRUST_PROXY: '1' }).trustProxy as (address: string, hop: number) => boolean
  t.ok(hops('10.0.0.1', 0))
  t.notOk(hops('10.0.0.1', 1), 'one hop trusted, not two')
})

t.test('secrets: one, several while rotating, or a JSON array for secrets with commas', async t => {
  t.same(parseSecrets('whsec_a', 'X'), ['whsec_a'])
  t.same(parseSecrets(' whsec_new , whsec_old ', 'X'), ['whsec_new', 'whsec_old'])
  t.same(parseSecrets('["a,b", "c d"]', 'X'), ['a,b', 'c d'])
  t.same(parseSecrets(undefined, 'X'), [])
  t.throws(() => parseSecrets('[not json', 'STRIPE_WEBHOOK_SECRET'), /STRIPE_WEBHOOK_SECRET starts with "\[" but is not a JSON array/)
  t.throws(() => parseSecrets('[1, ""]', 'STRIPE_WEBHOOK_SECRET'), /STRIPE_WEBHOOK_SECRET must be a JSON array of non-empty strings/)
})

t.test('production never generates secrets', async t => {
  await t.rejects(build(t, { NODE_ENV: 'production', WEBHOOK_PROVIDERS: 'stripe', STRIPE_WEBHOOK_SECRET: undefined }),
    { message: 'stripe is enabled by WEBHOOK_PROVIDERS but STRIPE_WEBHOOK_SECRET is not set' })
  await t.rejects(build(t, { NODE_ENV: 'production', STRIPE_WEBHOOK_SECRET: undefined }),
    { message: /no webhook provider is enabled/ })
  await t.rejects(build(t, { WEBHOOK_PROVIDERS: 'stripe,nope' }),
    { message: /WEBHOOK_PROVIDERS names unknown provider\(s\): nope/ })
  await t.rejects(build(t, { STRIPE_TOLERANCE_SECONDS: '-5' }),
    { message: /STRIPE_TOLERANCE_SECONDS must be >= 0/ })
})

t.test('outside production a missing secret is generated once and kept in DATA_DIR', async t => {
  const dataDir = await tempDir(t)
  const first = await build(t, { DATA_DIR: dataDir, STRIPE_WEBHOOK_SECRET: undefined })
  const saved = JSON.parse(await readFile(join(dataDir, 'dev-secrets.json'), 'utf8')) as Record<string, string>
  t.match(saved.STRIPE_WEBHOOK_SECRET, /^whsec_/)
  const generated = [...first.app.providers.generatedSecrets.keys()]
  t.ok(generated.includes('STRIPE_WEBHOOK_SECRET') && generated.includes('GITHUB_WEBHOOK_SECRET'), 'one for every provider without a secret')
  t.equal(Object.keys(saved).length, generated.length, 'all kept in the file')
  await first.app.close()

  const second = await build(t, { DATA_DIR: dataDir, STRIPE_WEBHOOK_SECRET: undefined })
  t.equal(second.app.providers.generatedSecrets.get('STRIPE_WEBHOOK_SECRET')?.secret, saved.STRIPE_WEBHOOK_SECRET, 'the same secret after a restart')
  const body = JSON.stringify(stripeEvent())
  const res = await second.app.inject({
    method: 'POST',
    url: '/webhooks/stripe',
    headers: { 'content-type': 'application/json', 'stripe-signature': stripeSignature(body, { secret: saved.STRIPE_WEBHOOK_SECRET }) },
    payload: body
  })
  t.equal(res.statusCode, 200, 'an event signed with the development secret is accepted')
})

t.test('rotation and tolerance come from the environment', async t => {
  const { app } = await build(t, { STRIPE_WEBHOOK_SECRET: 'whsec_new,whsec_old', STRIPE_TOLERANCE_SECONDS: '10' })
  const send = async (secret: string, timestamp?: number) => {
    const body = JSON.stringify(stripeEvent())
    return await app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': stripeSignature(body, { secret, timestamp }) },
      payload: body
    })
  }
  t.equal((await send('whsec_new')).statusCode, 200, 'new secret')
  t.equal((await send('whsec_old')).statusCode, 200, 'old secret, while rotating')
  t.equal((await send('whsec_other')).statusCode, 401)
  const stale = await send('whsec_new', Math.floor(Date.now() / 1000) - 60)
  t.equal(stale.json().reason, 'timestamp_too_old', 'a tolerance of 10 s refuses a minute-old signature')
})

t.test('a provider left out of WEBHOOK_PROVIDERS has no route', async t => {
  const { app } = await build(t, { WEBHOOK_PROVIDERS: 'stripe' })
  t.equal(app.providers.enabled.size, 1)
  t.equal((await app.inject({ method: 'POST', url: '/webhooks/github' })).statusCode, 404)
})

t.test('one source for the variables: .env.example and the README follow src/config.ts', async t => {
  const { ENV_SCHEMA, envExample } = await import('../src/config.js')
  const root = join(import.meta.dirname, '..')
  t.equal(readFileSync(join(root, '.env.example'), 'utf8'), envExample(), '.env.example is current (npm run env:example)')
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  for (const name of Object.keys(ENV_SCHEMA.properties)) t.match(readme, `\`${name}\``, `${name} is in the README's configuration table`)
  const documented = [...readme.matchAll(/^\| `([A-Z][A-Z0-9_]+)`/gm)].map(match => match[1])
  const unknown = documented.filter(name => !(name in ENV_SCHEMA.properties) && !/_(SECRET|TOLERANCE_SECONDS)$/.test(name))
  t.same(unknown, [], 'the README documents no variable the schema does not know')
})
