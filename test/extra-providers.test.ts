import { createHmac, randomUUID } from 'node:crypto'
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import { build, tempDir } from './helper.js'

const template = join(import.meta.dirname, '..', 'docs', 'providers', 'TEMPLATE.mjs')
const now = () => Math.floor(Date.now() / 1000)

t.test('drop-in: the documented template copied into PROVIDERS_DIR receives a verified event', async t => {
  const dir = await tempDir(t)
  await copyFile(template, join(dir, 'acme.mjs'))
  await writeFile(join(dir, 'clerk.mjs'), "export default kit => kit.standardWebhooks({ name: 'clerk', secretEnv: 'CLERK_WEBHOOK_SECRET' })\n")
  await writeFile(join(dir, 'README.txt'), 'not a provider\n')
  const secret = 'acme secret, with a comma'
  const clerkSecret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'
  const { app } = await build(t, {
    PROVIDERS_DIR: dir,
    ACME_WEBHOOK_SECRET: JSON.stringify([secret]),
    CLERK_WEBHOOK_SECRET: clerkSecret,
    WEBHOOK_PROVIDERS: 'acme,clerk'
  })
  const payload = JSON.stringify({ id: `evt_${randomUUID()}`, type: 'thing.happened' })
  const ts = now()
  const headers = {
    'content-type': 'application/json',
    'x-acme-timestamp': String(ts),
    'x-acme-signature': 'sha256=' + createHmac('sha256', secret).update(`${ts}.${payload}`).digest('hex')
  }
  const res = await app.inject({ method: 'POST', url: '/webhooks/acme', headers, payload })
  t.equal(res.statusCode, 200)
  t.equal(res.json().status, 'accepted')
  const { rows: [run] } = await app.pg.query('SELECT provider, event_type, headers FROM ops.runs WHERE run_id = $1', [res.json().run_id])
  t.match(run, { provider: 'acme', event_type: 'thing.happened' })
  t.notOk('x-acme-signature' in run.headers, 'its signature header is not stored')
  const forged = await app.inject({ method: 'POST', url: '/webhooks/acme', headers, payload: payload.replace('thing', 'other') })
  t.same(forged.json(), { error: 'unauthorized', reason: 'no_matching_signature' })

  const id = `msg_${randomUUID()}`
  const clerk = await app.inject({
    method: 'POST',
    url: '/webhooks/clerk',
    headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': new StandardWebhook(clerkSecret).sign(id, new Date(ts * 1000), payload) },
    payload
  })
  t.equal(clerk.statusCode, 200, 'a one-line Standard Webhooks drop-in')
})

t.test('drop-in: a file that is not a provider stops the boot with a clear message', async t => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'broken.mjs'), "export default { name: 'broken', secretEnv: 'BROKEN_SECRET' }\n")
  await t.rejects(build(t, { PROVIDERS_DIR: dir }), { message: /broken\.mjs must export signatureHeaders, verify\(\), identify\(\)/ })
  await t.rejects(build(t, { PROVIDERS_DIR: join(dir, 'nope') }), { message: /PROVIDERS_DIR: cannot read/ })
})

t.test('no-code providers from PROVIDERS_CONFIG', async t => {
  const config = [
    {
      name: 'billing',
      secretEnv: 'BILLING_SECRET',
      scheme: 'hmac',
      hmac: { algorithm: 'sha512', header: 'x-billing-signature', encoding: 'base64', signedContent: '{id}.{timestamp}.{body}', timestampHeader: 'x-billing-timestamp', idHeader: 'x-billing-id' },
      toleranceSeconds: 60,
      idempotencyKey: { header: 'x-billing-id' },
      eventType: { path: 'event.kind' }
    },
    { name: 'crm', secretEnv: 'CRM_API_KEY', scheme: 'api-key', apiKey: { header: 'x-api-key' }, idempotencyKey: { path: 'data.object.id' }, eventType: { header: 'x-crm-event' } },
    { name: 'legacy', secretEnv: 'LEGACY_CREDENTIALS', scheme: 'basic', idempotencyKey: { path: '$.delivery' } },
    { name: 'resend', secretEnv: 'RESEND_WEBHOOK_SECRET', scheme: 'standard-webhooks', idempotencyKey: { header: 'webhook-id' } }
  ]
  const dir = await tempDir(t)
  const file = join(dir, 'providers.json')
  await writeFile(file, JSON.stringify(config))
  const { app } = await build(t, {
    PROVIDERS_CONFIG: file,
    BILLING_SECRET: 'billing-secret',
    CRM_API_KEY: 'crm-key-1,crm-key-2',
    LEGACY_CREDENTIALS: 'hooks:p@ss word',
    RESEND_WEBHOOK_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    WEBHOOK_PROVIDERS: 'billing,crm,legacy,resend'
  })
  const post = async (url: string, headers: Record<string, string>, payload: string) =>
    await app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload })

  const billingBody = JSON.stringify({ event: { kind: 'invoice.paid' } })
  const ts = now()
  const billingHeaders = {
    'x-billing-id': 'del_1',
    'x-billing-timestamp': String(ts),
    'x-billing-signature': createHmac('sha512', 'billing-secret').update(`del_1.${ts}.${billingBody}`).digest('base64')
  }
  const billing = await post('/webhooks/billing', billingHeaders, billingBody)
  t.equal(billing.statusCode, 200, 'hmac sha512, base64, id.timestamp.body')
  t.equal((await app.pg.query('SELECT event_type FROM ops.runs WHERE run_id = $1', [billing.json().run_id])).rows[0].event_type, 'invoice.paid')
  t.equal((await post('/webhooks/billing', { ...billingHeaders, 'x-billing-id': 'del_2' }, billingBody)).json().reason, 'no_matching_signature', 'the id is signed')
  const stale = { ...billingHeaders, 'x-billing-timestamp': String(ts - 120) }
  t.equal((await post('/webhooks/billing', stale, billingBody)).json().reason, 'timestamp_too_old', 'its own tolerance')

  const crmBody = JSON.stringify({ data: { object: { id: 'obj_9' } } })
  t.equal((await post('/webhooks/crm', { 'x-api-key': 'crm-key-2', 'x-crm-event': 'contact.created' }, crmBody)).json().status, 'accepted', 'api-key, second key')
  t.equal((await post('/webhooks/crm', { 'x-api-key': 'crm-key-1', 'x-crm-event': 'contact.created' }, crmBody)).json().status, 'duplicate', 'keyed by data.object.id')
  t.equal((await post('/webhooks/crm', { 'x-api-key': 'crm-key' }, crmBody)).statusCode, 401)

  const legacyBody = JSON.stringify({ delivery: 'L-1' })
  const basic = `Basic ${Buffer.from('hooks:p@ss word').toString('base64')}`
  t.equal((await post('/webhooks/legacy', { authorization: basic }, legacyBody)).statusCode, 200, 'HTTP Basic')
  t.equal((await post('/webhooks/legacy', { authorization: `Basic ${Buffer.from('hooks:wrong').toString('base64')}` }, legacyBody)).statusCode, 401)
  t.equal((await post('/webhooks/legacy', { authorization: 'Bearer hooks:p@ss word' }, legacyBody)).json().reason, 'malformed_signature_header')

  const id = `msg_${randomUUID()}`
  const resendBody = JSON.stringify({ type: 'email.delivered' })
  const signature = new StandardWebhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw').sign(id, new Date(ts * 1000), resendBody)
  t.equal((await post('/webhooks/resend', { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': signature }, resendBody)).statusCode, 200, 'standard-webhooks by configuration')
})

t.test('a bad PROVIDERS_CONFIG is a boot error that names the entry and field', async t => {
  const cases: Array<[unknown, RegExp]> = [
    [[{ name: 'x', secretEnv: 'X_SECRET', scheme: 'hmac', idempotencyKey: { header: 'x-id' } }], /PROVIDERS_CONFIG\/0 must have required property 'hmac'/],
    [[{ name: 'Bad Name', secretEnv: 'X', scheme: 'api-key', idempotencyKey: { path: 'id' } }], /PROVIDERS_CONFIG\/0\/name must match pattern/],
    [[{ name: 'x', secretEnv: 'X', scheme: 'rot13', idempotencyKey: { path: 'id' } }], /PROVIDERS_CONFIG\/0\/scheme must be equal to one of the allowed values/],
    [[{ name: 'x', secretEnv: 'X', scheme: 'api-key' }], /must have required property 'idempotencyKey'/],
    [[{ name: 'x', secretEnv: 'X', scheme: 'hmac', hmac: { header: 'x-sig', signedContent: '{ts}.{body}' }, idempotencyKey: { path: 'id' } }], /PROVIDERS_CONFIG\[0\] \(x\): unknown placeholder \{ts\}/],
    [{ not: 'an array' }, /PROVIDERS_CONFIG must be array/]
  ]
  for (const [config, message] of cases) {
    await t.rejects(build(t, { PROVIDERS_CONFIG: JSON.stringify(config) }), { message }, String(message))
  }
  await t.rejects(build(t, { PROVIDERS_CONFIG: '[not json' }), { message: /PROVIDERS_CONFIG is not valid JSON/ })
  await t.rejects(build(t, { PROVIDERS_CONFIG: '/nonexistent/providers.json' }), { message: /PROVIDERS_CONFIG: cannot read/ })
  await t.rejects(build(t, { PROVIDERS_CONFIG: JSON.stringify([{ name: 'stripe', secretEnv: 'X', scheme: 'api-key', idempotencyKey: { path: 'id' } }]) }),
    { message: /two providers are named "stripe"/ })
})

t.test('no-code, key in an unsigned header, timestamp signed: a replay inside the tolerance is a duplicate, the same body later is new', async t => {
  const secret = 'pinger secret 0123456789'
  const { app } = await build(t, {
    PINGER_SECRET: secret,
    WEBHOOK_PROVIDERS: 'pinger',
    PROVIDERS_CONFIG: JSON.stringify([{
      name: 'pinger',
      secretEnv: 'PINGER_SECRET',
      scheme: 'hmac',
      hmac: { algorithm: 'sha256', header: 'x-pinger-signature', encoding: 'hex', signedContent: '{timestamp}.{body}', timestampHeader: 'x-pinger-timestamp' },
      idempotencyKey: { header: 'x-pinger-delivery' },
      eventType: { path: 'type' }
    }])
  })
  const payload = '{"type":"ping"}'
  const send = async (ts: number, delivery: string) => (await app.inject({
    method: 'POST',
    url: '/webhooks/pinger',
    headers: { 'content-type': 'application/json', 'x-pinger-timestamp': String(ts), 'x-pinger-delivery': delivery, 'x-pinger-signature': createHmac('sha256', secret).update(`${ts}.${payload}`).digest('hex') },
    payload
  })).json().status
  const ts = now()
  t.equal(await send(ts - 60, randomUUID()), 'accepted', 'a ping')
  t.equal(await send(ts - 60, randomUUID()), 'duplicate', 'the same signed request under another delivery id: a replay')
  t.equal(await send(ts, randomUUID()), 'accepted', 'a second ping a minute later, signed anew: a new event (651cd06: a duplicate for DEDUP_DAYS)')
})
