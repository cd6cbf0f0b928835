import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import tap from 'tap'
import { loadConfig } from '../src/config.js'
import { buildApp } from '../src/app.js'
import { STRIPE_SECRET, build, freshDatabase, stripeDelivery, stripeEvent, tempDir } from './helper.js'

// LOG_TRANSPORT: shipping logs to a file or a collector without code changes.

tap.test('LOG_TRANSPORT sends the JSON lines to a pino transport (here pino/file), redacted', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'hookgate.jsonl')
  const config = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: dir,
    DATABASE_URL: await freshDatabase(t),
    STRIPE_WEBHOOK_SECRET: STRIPE_SECRET,
    ROLE: 'ingest',
    LOG_TRANSPORT: JSON.stringify({ target: 'pino/file', options: { destination: file, mkdir: true } })
  })
  const app = buildApp(config)
  await app.ready()
  const delivery = stripeDelivery(stripeEvent())
  t.equal((await app.inject(delivery)).statusCode, 200)
  app.log.info({ headers: { 'stripe-signature': delivery.headers['stripe-signature'] } }, 'a careless line')
  await new Promise(resolve => setTimeout(resolve, 50))
  await app.close()
  // The transport runs in a worker thread: wait for its lines to land.
  let text = ''
  for (let i = 0; i < 50 && !text.includes('a careless line'); i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    text = await readFile(file, 'utf8').catch(() => '')
  }
  const lines = text.trim().split('\n').map(line => JSON.parse(line) as Record<string, unknown>)
  const summary = lines.find(line => line.msg === 'delivery')
  t.equal(summary?.outcome, 'accepted')
  t.equal(summary?.provider, 'stripe')
  t.match(summary?.request_id, /^[\w-]+$/)
  const careless = lines.find(line => line.msg === 'a careless line') as { headers: Record<string, string> }
  t.equal(careless.headers['stripe-signature'], '[redacted]', 'redacted before it leaves the process')
  t.notOk(text.includes(STRIPE_SECRET))
})

tap.test('LOG_TRANSPORT: a file, and what is refused at boot', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'transport.json')
  await writeFile(file, JSON.stringify({ targets: [{ target: 'pino/file', options: { destination: 1 } }] }))
  t.same(loadConfig({ LOG_TRANSPORT: file }).logTransport, { targets: [{ target: 'pino/file', options: { destination: 1 } }] })
  t.throws(() => loadConfig({ LOG_TRANSPORT: '{"options": {}}' }), /LOG_TRANSPORT must be a pino transport/)
  t.throws(() => loadConfig({ LOG_TRANSPORT: '{not json' }), /LOG_TRANSPORT: /)
  t.throws(() => loadConfig({ LOG_TRANSPORT: join(dir, 'missing.json') }), /LOG_TRANSPORT: .*ENOENT/)
})

tap.test('redaction: headers, and secrets at the top of a line, in an error or in a configuration', async t => {
  const { app, logs } = await build(t)
  app.log.info({ req: { headers: { authorization: 'Bearer tok_req_1234' } }, headers: { 'x-hub-signature-256': 'sha256=abcd1234' } }, 'headers')
  app.log.info({ token: 'tok_top_1234', password: 'pw_top_1234' }, 'top')
  app.log.error({ err: { message: 'boom', secret: 'sec_err_1234', cause: { token: 'tok_cause_1234' } } }, 'error')
  app.log.info({ config: { secret: 'sec_cfg_1234', env: { STRIPE_WEBHOOK_SECRET: 'whsec_cfg_1234' } } }, 'config')
  const line = (msg: string): Record<string, any> => logs.find(l => l.msg === msg) as Record<string, any>
  t.notOk(JSON.stringify(line('headers')).includes('tok_req'), 'a request\'s headers never reach a line')
  t.equal(line('headers').headers['x-hub-signature-256'], '[redacted]')
  t.same([line('top').token, line('top').password], ['[redacted]', '[redacted]'])
  t.equal(line('error').err.secret, '[redacted]')
  t.equal(line('error').err.cause.token, '[redacted]')
  t.equal(line('error').err.message, 'boom', 'the rest of the error is kept')
  t.same([line('config').secret, line('config').config.secret, line('config').config.env], [undefined, '[redacted]', '[redacted]'])
  t.notOk(JSON.stringify(logs).match(/_(req|top|err|cause|cfg)_1234/), 'no secret in any line')
})
