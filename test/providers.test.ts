import { createHash, createHmac, generateKeyPairSync, sign as ed25519Sign, randomUUID } from 'node:crypto'
import t from 'tap'
import { Webhook as SvixWebhook } from 'svix'
import twilio from 'twilio'
import { createRequire } from 'node:module'
import { sign as signGithub } from '@octokit/webhooks-methods'
import { build } from './helper.js'
import { allSecrets, senders, TWILIO_PUBLIC_BASE_URL } from './senders.js'

const examples = createRequire(import.meta.url)('@octokit/webhooks-examples') as Array<{ name: string, examples: unknown[] }>

t.test('every provider through the HTTP path, signed by its real sender', async t => {
  const { app, logs } = await build(t, { ...allSecrets(), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL, NODE_ENV: 'production' })
  const runsFor = async (provider: string, key: string) =>
    (await app.pg.query('SELECT run_id, status, payload, headers FROM ops.runs WHERE provider = $1 AND idempotency_key = $2', [provider, key])).rows

  for (const sender of senders) {
    await t.test(sender.name, async t => {
      const [current, previous] = sender.secrets
      const first = await sender.deliver(current)
      const accepted = await app.inject({ method: 'POST', ...first })
      t.equal(accepted.statusCode, 200, 'accepted')
      const runId = accepted.json().run_id as string
      t.match(accepted.json(), { status: 'accepted', run_id: /^[0-9a-f-]{36}$/ })
      const runs = await runsFor(sender.name, first.key)
      t.equal(runs.length, 1, 'stored under the provider\'s own event id')
      t.notOk(sender.signatureHeader in runs[0].headers, 'the signature header is not stored')

      const again = await app.inject({ method: 'POST', ...first })
      t.match(again.json(), { status: 'duplicate', run_id: runId }, 'a redelivery is a duplicate of the first run')
      t.equal((await runsFor(sender.name, first.key)).length, 1)

      const rotated = await sender.deliver(previous)
      t.equal((await app.inject({ method: 'POST', ...rotated })).statusCode, 200, 'the previous secret is still accepted while rotating')

      const refuse = async (name: string, delivery: typeof first, reason: string) => {
        const res = await app.inject({ method: 'POST', ...delivery })
        t.equal(res.statusCode, 401, name)
        t.same(res.json(), { error: 'unauthorized', reason }, name)
        t.equal((await runsFor(sender.name, delivery.key)).length, 0, `${name}: nothing stored`)
      }
      await refuse('wrong secret', await sender.deliver(sender.wrongSecret ?? 'a-wrong-secret'), 'no_matching_signature')
      const missing = await sender.deliver(current)
      delete missing.headers[sender.signatureHeader]
      await refuse('missing signature', missing, 'missing_signature_header')
      const garbage = await sender.deliver(current)
      garbage.headers[sender.signatureHeader] = 'garbage'
      await refuse('garbage signature', garbage, 'malformed_signature_header')
      const repeated = await sender.deliver(current)
      const twice = `${repeated.headers[sender.signatureHeader]}, ${repeated.headers[sender.signatureHeader]}`
      // (Node keeps only the first Authorization header; joined, SePay reads one wrong key.)
      await refuse('signature header sent twice', { ...repeated, headers: { ...repeated.headers, [sender.signatureHeader]: twice } },
        sender.name === 'sepay' ? 'no_matching_signature' : 'malformed_signature_header')
      if (sender.signsBody) {
        const tampered = await sender.deliver(current)
        await refuse('body changed after signing', { ...tampered, payload: tampered.payload.replace(/.$/, ' }') }, 'no_matching_signature')
      }
      if (sender.timestamped) {
        const tolerance = sender.name === 'paddle' ? 5 : sender.name === 'linear' ? 60 : 300
        const nowS = Math.floor(Date.now() / 1000)
        await refuse('stale timestamp', await sender.deliver(current, { timestamp: nowS - tolerance - 30 }), 'timestamp_too_old')
        await refuse('future timestamp', await sender.deliver(current, { timestamp: nowS + tolerance + 30 }), 'timestamp_in_future')
      }
    })
  }

  await t.test('rejections carry the reason in the log line and the audit, never the signature', async t => {
    const audited = (await app.pg.query("SELECT data FROM ops.run_events WHERE type = 'rejected'")).rows.map(r => r.data)
    for (const sender of senders) {
      t.ok(audited.some(a => a.provider === sender.name && a.reason === 'no_matching_signature'), `${sender.name} audited`)
      t.ok(logs.some(l => l.provider === sender.name && l.outcome === 'rejected' && l.reason === 'malformed_signature_header'), `${sender.name} logged`)
    }
    const text = JSON.stringify(logs) + JSON.stringify(audited)
    for (const sender of senders) for (const secret of sender.secrets) t.notOk(text.includes(secret), `no ${sender.name} secret in logs or audit`)
  })
})

t.test('provider specifics', async t => {
  const { app } = await build(t, { ...allSecrets(), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL })
  const sender = (name: string) => senders.find(s => s.name === name)!
  const post = async (delivery: { url: string, headers: Record<string, string>, payload: string }) => await app.inject({ method: 'POST', ...delivery })

  await t.test('GitHub: a real payload from @octokit/webhooks-examples, as JSON and as a form', async t => {
    const push = examples.find(e => e.name === 'push')!.examples[0]
    const payload = JSON.stringify(push, null, 2)
    const secret = sender('github').secrets[0]
    const key = randomUUID()
    const headers = { 'content-type': 'application/json', 'x-hub-signature-256': await signGithub(secret, payload), 'x-github-event': 'push', 'x-github-delivery': key }
    const res = await post({ url: '/webhooks/github', headers, payload })
    t.equal(res.statusCode, 200)
    const { rows: [run] } = await app.pg.query('SELECT event_type, payload FROM ops.runs WHERE idempotency_key = $1', [key])
    t.equal(run.event_type, 'push')
    t.same(run.payload, push)

    const form = `payload=${encodeURIComponent(JSON.stringify({ action: 'created', comment: { id: 1 } }))}`
    const formKey = randomUUID()
    const viaForm = await post({
      url: '/webhooks/github',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-hub-signature-256': await signGithub(secret, form), 'x-github-event': 'issue_comment', 'x-github-delivery': formKey },
      payload: form
    })
    t.equal(viaForm.statusCode, 200)
    const { rows: [formRun] } = await app.pg.query('SELECT event_type, payload FROM ops.runs WHERE idempotency_key = $1', [formKey])
    t.equal(formRun.event_type, 'issue_comment.created')
    t.same(formRun.payload, { action: 'created', comment: { id: 1 } })
    t.equal((await post({ ...await sender('github').deliver(secret), headers: { ...headers, 'x-github-delivery': '' } })).statusCode, 401, 'tampered with the wrong body')
  })

  await t.test('Standard Webhooks: svix-* headers signed by the svix SDK, and v1a Ed25519 keys', async t => {
    const secret = sender('standard-webhooks').secrets[0]
    const payload = JSON.stringify({ type: 'email.sent', data: { id: 're_1' } })
    const id = `msg_${randomUUID()}`
    const at = new Date()
    const svixHeaders = { 'svix-id': id, 'svix-timestamp': String(Math.floor(at.getTime() / 1000)), 'svix-signature': new SvixWebhook(secret).sign(id, at, payload) }
    const res = await post({ url: '/webhooks/standard-webhooks', headers: { 'content-type': 'application/json', ...svixHeaders }, payload })
    t.equal(res.statusCode, 200, 'svix-* headers')
    const mixed = await post({ url: '/webhooks/standard-webhooks', headers: { 'content-type': 'application/json', ...svixHeaders, 'webhook-id': 'msg_other' }, payload })
    t.equal(mixed.statusCode, 401, 'the two header sets are never mixed')

    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const whpk = `whpk_${Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64')}`
    const { app: signedApp } = await build(t, { STANDARD_WEBHOOKS_SECRET: `${whpk},${secret}`, WEBHOOK_PROVIDERS: 'standard-webhooks' })
    const ts = Math.floor(Date.now() / 1000)
    const v1a = (body: string, msgId: string) => ed25519Sign(null, Buffer.from(`${msgId}.${ts}.${body}`), privateKey).toString('base64')
    const headers = (msgId: string, signature: string) => ({ 'content-type': 'application/json', 'webhook-id': msgId, 'webhook-timestamp': String(ts), 'webhook-signature': signature })
    const ok = await signedApp.inject({ method: 'POST', url: '/webhooks/standard-webhooks', headers: headers('msg_a', `v1a,${v1a(payload, 'msg_a')}`), payload })
    t.equal(ok.statusCode, 200, 'v1a verified with the whpk_ key')
    const forged = await signedApp.inject({ method: 'POST', url: '/webhooks/standard-webhooks', headers: headers('msg_b', `v1a,${v1a(payload, 'msg_other')}`), payload })
    t.same(forged.json().reason, 'no_matching_signature')
    const unknown = await signedApp.inject({ method: 'POST', url: '/webhooks/standard-webhooks', headers: headers('msg_c', 'v2,abc'), payload })
    t.same(unknown.json().reason, 'unknown_key_version')
  })

  await t.test('Slack: url_verification is answered, slash commands (form) are keyed by the signed request', async t => {
    const secret = sender('slack').secrets[0]
    const challenge = await sender('slack').deliver(secret, { body: { type: 'url_verification', token: 'x', challenge: 'c-123' } })
    const answer = await post(challenge)
    t.equal(answer.statusCode, 200)
    t.same(answer.json(), { challenge: 'c-123' })
    const forgedChallenge = await post({ ...challenge, headers: { ...challenge.headers, 'x-slack-signature': 'v0=' + '0'.repeat(64) } })
    t.equal(forgedChallenge.statusCode, 401, 'even the handshake is verified')

    const ts = Math.floor(Date.now() / 1000)
    const form = 'token=x&team_id=T1&command=%2Fdeploy&text=prod&user_id=U2&trigger_id=398738663015'
    const headers = {
      'content-type': 'application/x-www-form-urlencoded',
      'x-slack-request-timestamp': String(ts),
      'x-slack-signature': 'v0=' + createHmac('sha256', secret).update(`v0:${ts}:${form}`).digest('hex')
    }
    const command = await post({ url: '/webhooks/slack', headers, payload: form })
    t.equal(command.statusCode, 200)
    t.equal(command.json().status, 'accepted')
    const retried = await post({ url: '/webhooks/slack', headers, payload: form })
    t.match(retried.json(), { status: 'duplicate', run_id: command.json().run_id }, 'Slack\'s retry of the same request')
    const { rows: [run] } = await app.pg.query('SELECT event_type, payload FROM ops.runs WHERE run_id = $1', [command.json().run_id])
    t.equal(run.event_type, 'command.deploy')
    t.equal(run.payload.text, 'prod')
  })

  await t.test('SePay: {"success": true}, outgoing transfers recorded as ignored, Bearer accepted', async t => {
    const [key] = sender('sepay').secrets
    const incoming = await sender('sepay').deliver(key)
    const res = await post(incoming)
    t.equal(res.statusCode, 200)
    t.match(res.json(), { success: true, status: 'accepted', run_id: String })
    const out = await sender('sepay').deliver(key, { body: { id: 987654321, transferType: 'out', transferAmount: 5000, content: 'x' } })
    t.equal((await post(out)).json().success, true)
    const bearer = await sender('sepay').deliver(key)
    t.equal((await post({ ...bearer, headers: { ...bearer.headers, authorization: `Bearer ${key}` } })).statusCode, 200, 'Bearer')
    const { rows } = await app.pg.query("SELECT idempotency_key, status, event_type FROM ops.runs WHERE provider = 'sepay' AND idempotency_key = ANY($1) ORDER BY event_type", [[incoming.key, '987654321']])
    t.same(rows, [
      { idempotency_key: incoming.key, status: 'received', event_type: 'transfer.in' },
      { idempotency_key: '987654321', status: 'ignored', event_type: 'transfer.out' }
    ])
    const prefixOnly = await sender('sepay').deliver(key)
    t.equal((await post({ ...prefixOnly, headers: { ...prefixOnly.headers, authorization: `Apikey ${key.slice(0, -1)}` } })).statusCode, 401, 'a prefix of the key is refused')
    t.equal((await post({ ...prefixOnly, headers: { ...prefixOnly.headers, authorization: `Basic ${key}` } })).json().reason, 'malformed_signature_header')
  })

  await t.test('Twilio: JSON bodies via bodySHA256, the URL with its default port, and message-status keys', async t => {
    const token = sender('twilio').secrets[0]
    const callSid = `CA${'1'.repeat(32)}`
    const body = JSON.stringify({ CallSid: callSid, CallStatus: 'completed' })
    const hash = createHash('sha256').update(body).digest('hex')
    const path = `/webhooks/twilio?bodySHA256=${hash}`
    const signature = twilio.getExpectedTwilioSignature(token, `${TWILIO_PUBLIC_BASE_URL}:443${path}`, {})
    const res = await post({ url: path, headers: { 'content-type': 'application/json', 'x-twilio-signature': signature }, payload: body })
    t.equal(res.statusCode, 200, 'JSON with bodySHA256, signed with :443 in the URL')
    const { rows: [run] } = await app.pg.query('SELECT idempotency_key, event_type FROM ops.runs WHERE run_id = $1', [res.json().run_id])
    t.match(run, { idempotency_key: new RegExp(`^${callSid}:completed:[0-9a-f]{32}$`), event_type: 'call.completed' }, 'no idempotency token: the call SID, its status and (no SequenceNumber) the signed content')
    const tampered = await post({ url: path, headers: { 'content-type': 'application/json', 'x-twilio-signature': signature }, payload: body.replace('completed', 'failed') })
    t.equal(tampered.json().reason, 'no_matching_signature', 'the body must match bodySHA256')
    const messageSid = `SM${'1'.repeat(32)}`
    const repeated = new URLSearchParams([['MessageSid', messageSid], ['MessageStatus', 'sent'], ['Media', 'b'], ['Media', 'a']]).toString()
    const multi = twilio.getExpectedTwilioSignature(token, `${TWILIO_PUBLIC_BASE_URL}/webhooks/twilio`, { MessageSid: messageSid, MessageStatus: 'sent', Media: ['b', 'a'] })
    const withRepeats = await post({ url: '/webhooks/twilio', headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': multi }, payload: repeated })
    t.equal(withRepeats.statusCode, 200, 'a parameter sent several times')
  })

  await t.test('Twilio behind a trusted proxy: the URL comes from X-Forwarded-Proto/Host', async t => {
    const token = sender('twilio').secrets[0]
    const { app: proxied } = await build(t, { TWILIO_AUTH_TOKEN: token, WEBHOOK_PROVIDERS: 'twilio', TRUST_PROXY: '127.0.0.1' })
    const params = { MessageSid: `SM${'9'.repeat(32)}`, MessageStatus: 'delivered' }
    const signature = twilio.getExpectedTwilioSignature(token, 'https://public.example.org/webhooks/twilio', params)
    const headers = { 'content-type': 'application/x-www-form-urlencoded', 'x-twilio-signature': signature, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example.org' }
    const res = await proxied.inject({ method: 'POST', url: '/webhooks/twilio', headers, payload: new URLSearchParams(params).toString() })
    t.equal(res.statusCode, 200)
    const untrusted = await proxied.inject({ method: 'POST', url: '/webhooks/twilio', headers, payload: new URLSearchParams(params).toString(), remoteAddress: '10.1.2.3' })
    t.equal(untrusted.statusCode, 401, 'forwarded headers from an untrusted peer are not believed')
  })

  await t.test('Linear: the signed webhookTimestamp must be present', async t => {
    const secret = sender('linear').secrets[0]
    const delivery = await sender('linear').deliver(secret, { body: { action: 'update', type: 'Issue', data: {} } })
    t.equal((await post(delivery)).json().reason, 'missing_timestamp')
  })

  await t.test('Shopify: no X-Shopify-Event-Id is a 400, as shopify-app-js answers', async t => {
    const secret = sender('shopify').secrets[0]
    const delivery = await sender('shopify').deliver(secret)
    delete delivery.headers['x-shopify-event-id']
    const res = await post(delivery)
    t.same([res.statusCode, res.json().reason, res.json().missing], [400, 'missing_headers', ['x-shopify-event-id']])
  })
})
