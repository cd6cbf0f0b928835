import { createHash, createHmac, randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import twilio from 'twilio'
import { sign as signGithub } from '@octokit/webhooks-methods'
import { build, STRIPE_SECRET } from './helper.js'
import { allSecrets, senders, TWILIO_PUBLIC_BASE_URL } from './senders.js'
import { formFields, MAX_FORM_FIELDS } from '../src/provider.js'

// Issue 13: what the providers' own libraries, a hostile review and a clean shutdown found.

const sender = (name: string) => senders.find(s => s.name === name)!
const form = { 'content-type': 'application/x-www-form-urlencoded' }
const json = { 'content-type': 'application/json' }

t.test('one unauthenticated form body cannot freeze the process', async t => {
  const token = sender('twilio').secrets[0]
  const { app } = await build(t, { TWILIO_AUTH_TOKEN: token, WEBHOOK_PROVIDERS: 'twilio', PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL })
  // 88 KB of repeated empty fields: quadratic parsing took ~8 s of one event loop before the signature was checked.
  const hostile = 'a=&'.repeat(30_000)
  const signature = twilio.getExpectedTwilioSignature(token, `${TWILIO_PUBLIC_BASE_URL}/webhooks/twilio`, { a: '' })
  let fastest = Infinity
  for (let i = 0; i < 3; i++) {
    const valid = await sender('twilio').deliver(token)
    const started = performance.now()
    const [refused, accepted] = await Promise.all([
      app.inject({ method: 'POST', url: '/webhooks/twilio', headers: { ...form, 'x-twilio-signature': signature }, payload: hostile }).then(res => ({ res, ms: performance.now() - started })),
      app.inject({ method: 'POST', ...valid })
    ])
    t.equal(refused.res.statusCode, 401)
    t.equal(refused.res.json().reason, 'too_many_fields')
    t.equal(accepted.statusCode, 200, 'a valid delivery sent at the same time is accepted')
    fastest = Math.min(fastest, refused.ms)
  }
  t.ok(fastest < 50, `answered 401 in ${fastest.toFixed(1)} ms (< 50 ms)`)

  // The parser itself: linear, and bounded in fields.
  t.throws(() => formFields(Buffer.from('a=&'.repeat(40_000))), /more than 1000 form fields/)
  const many = Array.from({ length: MAX_FORM_FIELDS - 1 }, () => 'Media=x').join('&')
  t.equal((formFields(many).Media as string[]).length, MAX_FORM_FIELDS - 1, 'just below the cap: every value kept')
  t.same(formFields('a=1&b=2&a=3&a=4'), { a: ['1', '3', '4'], b: '2' })
})

t.test('the signed bytes, not the unsigned Content-Type, decide how a body is read', async t => {
  const generic = {
    name: 'both',
    secretEnv: 'BOTH_WEBHOOK_SECRET',
    scheme: 'hmac',
    hmac: { header: 'x-both-signature', encoding: 'hex' },
    contentTypes: ['application/json', 'application/x-www-form-urlencoded'],
    idempotencyKey: { path: 'id' }
  }
  const { app } = await build(t, { ...allSecrets(), BOTH_WEBHOOK_SECRET: 'both secret', PROVIDERS_CONFIG: JSON.stringify([generic]), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL })
  const runs = async (provider: string) => (await app.pg.query('SELECT idempotency_key, event_type, payload FROM ops.runs WHERE provider = $1', [provider])).rows

  // GitHub: a JSON body that also reads as a form with a `payload` field of the attacker's choosing.
  const secret = sender('github').secrets[0]
  const smuggled = encodeURIComponent(JSON.stringify({ action: 'deleted', repository: { full_name: 'victim/repo' } }))
  const body = JSON.stringify({ action: 'opened', issue: { number: 1, title: `x&payload=${smuggled}&y=` } })
  const headers = { 'x-hub-signature-256': await signGithub(secret, body), 'x-github-event': 'issues', 'x-github-delivery': randomUUID() }
  t.equal((await app.inject({ method: 'POST', url: '/webhooks/github', headers: { ...json, ...headers }, payload: body })).statusCode, 200, 'as sent: accepted')
  const reposted = await app.inject({ method: 'POST', url: '/webhooks/github', headers: { ...form, ...headers, 'x-github-event': 'repository', 'x-github-delivery': randomUUID() }, payload: body })
  t.equal(reposted.statusCode, 400)
  t.equal(reposted.json().reason, 'content_type_mismatch', 're-posted as a form: refused')
  t.same((await runs('github')).map(r => r.event_type), ['issues.opened'], 'only the real event stored')
  // A real form-encoded GitHub delivery (one payload field) still works.
  const formBody = `payload=${encodeURIComponent(JSON.stringify({ action: 'closed', issue: { number: 2 } }))}`
  const formDelivery = await app.inject({ method: 'POST', url: '/webhooks/github', headers: { ...form, 'x-hub-signature-256': await signGithub(secret, formBody), 'x-github-event': 'issues', 'x-github-delivery': randomUUID() }, payload: formBody })
  t.equal(formDelivery.statusCode, 200, 'a form-encoded webhook (payload field)')
  const twoFields = `${formBody}&payload=${smuggled}`
  const refusedForm = await app.inject({ method: 'POST', url: '/webhooks/github', headers: { ...form, 'x-hub-signature-256': await signGithub(secret, twoFields), 'x-github-event': 'issues', 'x-github-delivery': randomUUID() }, payload: twoFields })
  t.equal(refusedForm.json().reason, 'malformed_payload', 'a form body is one payload field')

  // Slack: an Events API callback re-posted as a slash command.
  const slack = await sender('slack').deliver(sender('slack').secrets[0], { body: { type: 'event_callback', event_id: 'EvSMUGGLE', event: { type: 'message', text: 'a&command=/deploy&text=prod' } } })
  t.equal((await app.inject({ method: 'POST', ...slack, headers: { ...slack.headers, ...form } })).json().reason, 'content_type_mismatch')
  t.equal((await app.inject({ method: 'POST', ...slack })).statusCode, 200, 'the same bytes as JSON: accepted')
  t.same((await runs('slack')).map(r => r.event_type), ['message'])

  // A no-code provider that takes both.
  const both = JSON.stringify({ id: 'both_1', note: 'x&id=forged' })
  const bothHeaders = { 'x-both-signature': createHmac('sha256', 'both secret').update(both).digest('hex') }
  t.equal((await app.inject({ method: 'POST', url: '/webhooks/both', headers: { ...form, ...bothHeaders }, payload: both })).json().reason, 'content_type_mismatch')
  t.equal((await app.inject({ method: 'POST', url: '/webhooks/both', headers: { ...json, ...bothHeaders }, payload: both })).statusCode, 200)
  t.same((await runs('both')).map(r => r.idempotency_key), ['both_1'])

  // Twilio: a JSON-mode signature (the signed URL carries bodySHA256) never verifies a form body.
  const token = sender('twilio').secrets[0]
  const path = `/webhooks/twilio?bodySHA256=${createHash('sha256').update('{}').digest('hex')}`
  const jsonModeSignature = twilio.getExpectedTwilioSignature(token, TWILIO_PUBLIC_BASE_URL + path, {})
  const formWithJsonSignature = await app.inject({ method: 'POST', url: path, headers: { ...form, 'x-twilio-signature': jsonModeSignature, 'i-twilio-idempotency-token': 'tok1' }, payload: '' })
  t.equal(formWithJsonSignature.statusCode, 401, 'an empty form body under a JSON-mode signature')
  t.equal(formWithJsonSignature.json().reason, 'no_matching_signature')
})

t.test('replays through unsigned key headers are duplicates of the first run', async t => {
  const generic = {
    name: 'keyed',
    secretEnv: 'KEYED_WEBHOOK_SECRET',
    scheme: 'hmac',
    hmac: { header: 'x-keyed-signature', encoding: 'hex' },
    idempotencyKey: { header: 'x-keyed-id' }
  }
  const { app } = await build(t, { ...allSecrets(), KEYED_WEBHOOK_SECRET: 'keyed secret', PROVIDERS_CONFIG: JSON.stringify([generic]), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL })
  const countRuns = async (provider: string) => (await app.pg.query('SELECT count(*)::int AS n FROM ops.runs WHERE provider = $1', [provider])).rows[0].n as number
  const replayedEvents = async (runId: string) => (await app.pg.query("SELECT data FROM ops.run_events WHERE run_id = $1 AND type = 'replayed_body'", [runId])).rows

  const freshKey: Record<string, (headers: Record<string, string>) => Record<string, string>> = {
    github: h => ({ ...h, 'x-github-delivery': randomUUID(), 'x-github-event': 'push' }),
    shopify: h => ({ ...h, 'x-shopify-event-id': randomUUID(), 'x-shopify-webhook-id': randomUUID() }),
    linear: h => ({ ...h, 'linear-delivery': randomUUID() }),
    twilio: h => ({ ...h, 'i-twilio-idempotency-token': randomUUID() })
  }
  for (const [name, fresh] of Object.entries(freshKey)) {
    const captured = await sender(name).deliver(sender(name).secrets[0], name === 'twilio' ? { body: { AccountSid: 'AC1', Body: 'no sid here' } } : {})
    const first = await app.inject({ method: 'POST', ...captured })
    t.equal(first.json().status, 'accepted', `${name}: accepted`)
    const replay = await app.inject({ method: 'POST', ...captured, headers: fresh(captured.headers) })
    t.equal(replay.statusCode, 200, `${name}: the replay is answered 200 (nothing for the sender to retry)`)
    t.same(replay.json(), { ...first.json(), status: 'duplicate' }, `${name}: the same signed bytes under a fresh key are a duplicate of the first run`)
    t.equal(await countRuns(name), 1, `${name}: one run`)
    const [event] = await replayedEvents(first.json().run_id)
    t.ok(event !== undefined, `${name}: audited as replayed_body`)
    t.notOk(JSON.stringify(event ?? {}).includes(captured.headers[sender(name).signatureHeader]), `${name}: no signature in the audit`)
    await app.pg.query('DELETE FROM ops.runs; DELETE FROM ops.run_keys')
  }

  // An old body sent under an upcoming key does not take that key from the real event.
  const old = await sender('github').deliver(sender('github').secrets[0])
  t.equal((await app.inject({ method: 'POST', ...old })).json().status, 'accepted')
  const upcoming = randomUUID()
  t.equal((await app.inject({ method: 'POST', ...old, headers: { ...old.headers, 'x-github-delivery': upcoming } })).json().status, 'duplicate')
  const real = await sender('github').deliver(sender('github').secrets[0], { body: { action: 'closed', issue: { number: 7 } } })
  const realAnswer = await app.inject({ method: 'POST', ...real, headers: { ...real.headers, 'x-github-delivery': upcoming } })
  t.equal(realAnswer.json().status, 'accepted', 'the real event under that key is accepted')

  // Shopify: one order sent byte for byte as two topics stays two events.
  const order = await sender('shopify').deliver(sender('shopify').secrets[0])
  t.equal((await app.inject({ method: 'POST', ...order })).json().status, 'accepted')
  t.equal((await app.inject({ method: 'POST', ...order, headers: { ...freshKey.shopify(order.headers), 'x-shopify-topic': 'orders/paid' } })).json().status, 'accepted', 'orders/paid with the same bytes')

  // Twilio: the key comes from the signed parameters; the unsigned token header cannot change it.
  const status = await sender('twilio').deliver(sender('twilio').secrets[0])
  const a = await app.inject({ method: 'POST', ...status })
  const b = await app.inject({ method: 'POST', ...status, headers: freshKey.twilio(status.headers) })
  t.same([a.json().status, b.json().status, b.json().run_id], ['accepted', 'duplicate', a.json().run_id])
  const { rows: [run] } = await app.pg.query('SELECT idempotency_key FROM ops.runs WHERE run_id = $1', [a.json().run_id])
  t.equal(run.idempotency_key, status.key, 'MessageSid:MessageStatus')

  // A no-code key header outside the signed content; and concurrent replays in one batch.
  const keyedBody = JSON.stringify({ amount: 100 })
  const keyedHeaders = { ...json, 'x-keyed-signature': createHmac('sha256', 'keyed secret').update(keyedBody).digest('hex') }
  const answers = await Promise.all(Array.from({ length: 5 }, async (_, i) => await app.inject({ method: 'POST', url: '/webhooks/keyed', headers: { ...keyedHeaders, 'x-keyed-id': `k${i}` }, payload: keyedBody })))
  t.equal(answers.filter(r => r.json().status === 'accepted').length, 1, 'five keys, one body, sent at once: one accepted')
  t.equal(new Set(answers.map(r => r.json().run_id)).size, 1, 'all answered with the same run id')
  t.equal(await countRuns('keyed'), 1)

  // Providers whose key is signed are not guarded: two Stripe events may share bytes only by sharing an id.
  const { rows: [guard] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE provider = 'stripe' AND replay_sha256 IS NOT NULL")
  t.equal(guard.n, 0)
})

t.test('Slack ssl_check, Shopify headers, Stripe rotation leftovers', async t => {
  const { app } = await build(t, { ...allSecrets(), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL })
  const rows = async () => (await app.pg.query('SELECT (SELECT count(*) FROM ops.runs)::int AS runs, (SELECT count(*) FROM ops.run_events)::int AS events')).rows[0]
  const before = await rows()
  const check = await app.inject({ method: 'POST', url: '/webhooks/slack', headers: form, payload: 'ssl_check=1&token=legacy' })
  t.equal(check.statusCode, 200, 'Slack ssl_check: 200, unsigned, as Bolt answers it')
  t.equal(check.body, '')
  t.same(await rows(), before, 'nothing stored, nothing audited')
  const notCheck = await app.inject({ method: 'POST', url: '/webhooks/slack', headers: form, payload: 'ssl_check=0&command=/x' })
  t.equal(notCheck.statusCode, 401, 'anything else goes through the signature check')

  const shopify = sender('shopify')
  for (const header of ['x-shopify-topic', 'x-shopify-shop-domain', 'x-shopify-api-version', 'x-shopify-webhook-id']) {
    const delivery = await shopify.deliver(shopify.secrets[0])
    delete delivery.headers[header]
    const res = await app.inject({ method: 'POST', ...delivery })
    t.equal(res.statusCode, 400, `Shopify without ${header}: 400`)
    t.same(res.json(), { error: 'bad_request', reason: 'missing_headers', missing: [header] })
  }
  const event = await shopify.deliver(shopify.secrets[0])
  const one = await app.inject({ method: 'POST', ...event })
  const otherSubscription = await app.inject({ method: 'POST', ...event, headers: { ...event.headers, 'x-shopify-webhook-id': randomUUID() } })
  t.same([one.json().status, otherSubscription.json().status, otherSubscription.json().run_id], ['accepted', 'duplicate', one.json().run_id],
    'one event id sent to two subscriptions: one run')
})

t.test('Twilio: the URL keeps its own port, Host is validated', async t => {
  const token = sender('twilio').secrets[0]
  const { app } = await build(t, { TWILIO_AUTH_TOKEN: token, WEBHOOK_PROVIDERS: 'twilio' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const params = { MessageSid: `SM${'0'.repeat(32)}`, MessageStatus: 'sent' }
  // What `npm run send -- twilio` does on the default port: the URL signed is http://localhost:3000/...
  const url = `http://127.0.0.1:${port}/webhooks/twilio`
  const res = await fetch(url, { method: 'POST', headers: { ...form, 'x-twilio-signature': twilio.getExpectedTwilioSignature(token, url, params) }, body: new URLSearchParams(params) })
  t.equal(res.status, 200, 'signed with a non-default port')

  // Twilio's normalised and legacy query-string forms.
  const query = "/webhooks/twilio?name=O'Brien"
  const normalised = new URL(`http://127.0.0.1:${port}${query}`).toString()
  const legacy = normalised.replace('%27', "'").replace("'", '%27')
  for (const [name, signedUrl] of [['normalised', normalised], ['legacy', legacy]]) {
    const p = { MessageSid: `SM${name === 'legacy' ? 'a'.repeat(32) : 'b'.repeat(32)}`, MessageStatus: 'sent' }
    const answer = await app.inject({ method: 'POST', url: query, headers: { ...form, host: `127.0.0.1:${port}`, 'x-twilio-signature': twilio.getExpectedTwilioSignature(token, signedUrl, p) }, payload: new URLSearchParams(p).toString() })
    t.equal(answer.statusCode, 200, `the ${name} form of the URL`)
  }
  for (const host of ['evil.example/x?', 'a b', 'h@evil.example', 'x'.repeat(300)]) {
    const answer = await app.inject({ method: 'POST', url: '/webhooks/twilio', headers: { ...form, host, 'x-twilio-signature': 'RSOYDt4T1cUTdK1PDd93/VVr8B8=' }, payload: 'MessageSid=SM1' })
    t.equal(answer.statusCode, 400, `Host ${JSON.stringify(host.slice(0, 20))}: 400`)
    t.equal(answer.json().reason, 'invalid_host')
  }
  const { rows: [audited] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'rejected' AND data->>'reason' = 'invalid_host'")
  t.equal(audited.n, 4, 'each one audited')
})

t.test('destination answers are read with a cap: a 300 MB answer, a gzip bomb, a redirect, a drip', async t => {
  const { gzipSync } = await import('node:zlib')
  const { loadDestinations } = await import('../src/destinations.js')
  const http = await import('node:http')
  const bomb = gzipSync(Buffer.alloc(512 * 1024 * 1024)) // ~500 KB that inflates to 512 MB
  let streamed = 0
  const server = http.createServer((req, res) => {
    req.resume()
    if (req.url === '/huge') {
      // 300 MB of answer, written as fast as the client reads it.
      res.writeHead(500, { 'content-type': 'text/plain' })
      const chunk = Buffer.alloc(1024 * 1024, 'x')
      const write = (): void => {
        while (streamed < 300 * 1024 * 1024) {
          streamed += chunk.length
          if (!res.write(chunk)) { res.once('drain', write); return }
        }
        res.end()
      }
      res.on('close', () => { res.removeAllListeners('drain') })
      write()
    } else if (req.url === '/bomb') {
      res.writeHead(409, { 'content-encoding': 'gzip', 'content-type': 'text/plain' })
      res.end(bomb)
    } else if (req.url === '/nul') {
      res.writeHead(409, { 'content-type': 'text/plain' })
      res.end('order\u0000 42\u0007 exists')
    } else if (req.url === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' })
      res.end()
    } else if (req.url === '/drip' || req.url === '/drip-ok') {
      res.writeHead(req.url === '/drip' ? 400 : 200, { 'content-type': 'text/plain' })
      const timer = setInterval(() => res.write('.'), 50)
      res.on('close', () => { clearInterval(timer) })
    } else {
      res.writeHead(200)
      res.end('x'.repeat(10 * 1024 * 1024))
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const destinations = await loadDestinations(JSON.stringify(['huge', 'bomb', 'redirect', 'drip', 'ok', 'nul', 'drip-ok'].map(name => ({ name, url: `${base}/${name}`, secretEnv: 'DEST_SECRET', timeoutMs: 3000 }))),
    { DEST_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  const run = { run_id: randomUUID(), provider: 'stripe', event_type: 'x', payload: { id: 'evt_1' } }
  const rssBefore = process.memoryUsage().rss
  const [huge, bombed, redirected, drip, ok, nul, dripOk] = await Promise.all(destinations.map(async d => await d.forward(run)))
  const grew = process.memoryUsage().rss - rssBefore
  t.match(huge, { outcome: 'retry', reason: 'destination huge answered 500' })
  t.ok(streamed < 64 * 1024 * 1024, `the 300 MB answer was not read (${Math.round(streamed / 1024 / 1024)} MB written before the client stopped)`)
  t.match(bombed, { outcome: 'exception', details: { status: 409, response: '[a gzip-encoded answer, not decoded]' } }, 'the 409 excerpt: an encoded answer is never inflated')
  t.match(nul, { outcome: 'exception', details: { status: 409, response: 'order 42 exists' } }, 'control characters dropped (jsonb stores no NUL)')
  t.match(redirected, { outcome: 'failed', reason: /answered a redirect \(302\): not followed/ })
  t.match(drip, { outcome: 'retry', reason: 'destination drip: timed out after 3000 ms' }, 'an answer that never ends is cut at the deadline')
  t.same(ok, { outcome: 'done' }, 'a 2xx with a 10 MB answer: done, the answer dropped after 128 KB')
  t.same(dripOk, { outcome: 'done' }, 'a 2xx whose answer never ends: done (the status said so), cut at the deadline')
  t.ok(grew < 100 * 1024 * 1024, `RSS grew ${Math.round(grew / 1024 / 1024)} MB (before: a 300 MB answer or a gzip bomb took it to 2-3 GB)`)
})

t.test('smaller ones: destination keys, NODE_ENV, DATABASE_URL in boot errors, admin sign-ins, no-code separators', async t => {
  for (const secret of ['whsec_', 'whsec_AAAAAAAAAAAAAAAAAAAAAAAA']) {
    await t.rejects(build(t, { ROLE: 'all', DEST_SECRET: secret, DESTINATIONS: JSON.stringify([{ name: 'billing', url: 'http://127.0.0.1:1/', secretEnv: 'DEST_SECRET' }]) }),
      { message: 'destination billing: DEST_SECRET decodes to an empty or all-zero key (use whsec_ + base64 of 24+ random bytes)' }, `destination secret ${secret.slice(0, 10)}…: boot error`)
  }

  const { loadConfig } = await import('../src/config.js')
  for (const env of ['staging', 'prod', 'Production']) t.equal(loadConfig({ NODE_ENV: env }).production, true, `NODE_ENV=${env} behaves like production`)
  for (const env of ['development', 'test']) t.equal(loadConfig({ NODE_ENV: env }).production, false, `NODE_ENV=${env} does not`)
  await t.rejects(build(t, { NODE_ENV: 'staging', STRIPE_WEBHOOK_SECRET: undefined }), { message: /no webhook provider is enabled/ },
    'staging generates no secret for every provider')

  for (const url of ['postgres://hookgate:S3cretPassw0rd@127.0.0.1:1/db', 'postgres://hookgate@127.0.0.1:1/db?password=S3cretPassw0rd&sslmode=disable']) {
    const err = await build(t, { DATABASE_URL: url }).then(() => undefined, (e: Error) => e)
    t.match(err?.message, /^cannot use the database at postgres:\/\/hookgate@127\.0\.0\.1:1\/db: /)
    t.notMatch(err?.message, /S3cretPassw0rd/, 'no password in the boot error')
  }

  const token = 'admin-token-0123456789abcdef'
  const { app } = await build(t, { ADMIN_TOKEN: token, ADMIN_SIGN_IN_LIMIT: '3' })
  const list = async (authorization: string, remoteAddress = '127.0.0.1') => await app.inject({ method: 'GET', url: '/admin/runs', headers: { authorization }, remoteAddress })
  t.equal((await list(`bearer ${token}`, '10.0.0.9')).statusCode, 200, 'the scheme name is case-insensitive (RFC 7235)')
  t.equal((await list(`BEARER ${token}`, '10.0.0.9')).statusCode, 200)
  const signIns: number[] = []
  for (const wrong of ['a', 'b', 'c', 'd']) signIns.push((await list(`Bearer wrong-token-${wrong}`)).statusCode)
  t.same(signIns, [401, 401, 401, 429], 'failed sign-ins are limited')
  const limited = await list(`Bearer ${token}`)
  t.equal(limited.statusCode, 429, 'until the window ends, even with the right token')
  t.ok(Number(limited.headers['retry-after']) > 0)
  t.equal((await list(`Bearer ${token}`, '10.0.0.9')).statusCode, 200, 'another client is not')

  // Behind one trusted hop, a client's own X-Forwarded-For entries are not believed: rotating them
  // does not make it another client (the balancer appends the address it saw).
  const { app: proxied } = await build(t, { ADMIN_TOKEN: token, ADMIN_SIGN_IN_LIMIT: '3', TRUST_PROXY: '1', NODE_ENV: 'production', STRIPE_WEBHOOK_SECRET: STRIPE_SECRET })
  const rotated: number[] = []
  for (let i = 0; i < 6; i++) {
    rotated.push((await proxied.inject({ method: 'GET', url: '/admin/runs', headers: { authorization: `Bearer wrong-${i}`, 'x-forwarded-for': `198.51.100.${i}, 203.0.113.7` } })).statusCode)
  }
  t.same(rotated, [401, 401, 401, 429, 429, 429], 'rotating X-Forwarded-For: one client, limited (TRUST_PROXY=true, refused in production now: 110 tries, all 401)')

  const { configuredProviders } = await import('../src/extra-providers.js')
  t.throws(() => configuredProviders([{ name: 'glued', secretEnv: 'GLUED_SECRET', scheme: 'hmac', idempotencyKey: { header: 'x-id' }, hmac: { header: 'x-sig', signedContent: '{id}{timestamp}{body}', idHeader: 'x-id', timestampHeader: 'x-ts' } }]),
    /signed content "\{id\}\{timestamp\}\{body\}" needs a separator between its fields/, 'fields without a separator: boot error')
  t.doesNotThrow(() => configuredProviders([{ name: 'dotted', secretEnv: 'DOTTED_SECRET', scheme: 'hmac', idempotencyKey: { header: 'x-id' }, hmac: { header: 'x-sig', signedContent: '{id}.{timestamp}.{body}', idHeader: 'x-id', timestampHeader: 'x-ts' } }]))
})
