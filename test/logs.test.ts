import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import tap from 'tap'
import { loadConfig } from '../src/config.js'
import { buildApp } from '../src/app.js'
import { STRIPE_SECRET, freshDatabase, stripeDelivery, stripeEvent, tempDir } from './helper.js'

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
