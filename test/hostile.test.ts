import { createHmac } from 'node:crypto'
import { connect } from 'node:net'
import tap from 'tap'
import type { InjectOptions } from 'fastify'
import Stripe from 'stripe'
import { build, STRIPE_SECRET, stripeDelivery, stripeEvent, withClient } from './helper.js'
import { allSecrets, senders, TWILIO_PUBLIC_BASE_URL } from './senders.js'

// Hostile input: none of it is accepted, none of it crashes or stalls the process.
// Each provider's own hostile table (wrong/missing/garbage/repeated headers, tampered bodies,
// stale and future timestamps) is in providers.test.ts; property-based fuzzing of every verifier
// in provider-signatures.test.ts.

tap.test('signature headers: every provider refuses hostile variants with 401, nothing stored', async t => {
  const { app, databaseUrl } = await build(t, { ...allSecrets(), PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL, NODE_ENV: 'production' })
  for (const sender of senders) {
    const valid = await sender.deliver(sender.secrets[0])
    const signature = valid.headers[sender.signatureHeader]
    const variants: Array<[string, Record<string, string | string[]>]> = [
      ['empty', { [sender.signatureHeader]: '' }],
      ['oversized (64 KB)', { [sender.signatureHeader]: 'a'.repeat(65536) }],
      ['non-ASCII', { [sender.signatureHeader]: `${signature}é✓` }],
      ['upper-cased', { [sender.signatureHeader]: signature.toUpperCase() }],
      ['odd length (one character cut)', { [sender.signatureHeader]: signature.slice(0, -1) }],
      ['repeated with a wrong value first', { [sender.signatureHeader]: ['v1=deadbeef', 'Bearer x', 'sha256=00'] }],
      ['only whitespace', { [sender.signatureHeader]: '   ' }]
    ]
    for (const [name, headers] of variants) {
      const res = await app.inject({ method: 'POST', url: valid.url, headers: { ...valid.headers, ...headers }, payload: valid.payload })
      // Upper-casing a Base64 or hex digest still fails the comparison; a few schemes (hex compared
      // case-insensitively by the provider's own SDK) may accept it: then it must be the same event.
      if (name === 'upper-cased' && res.statusCode === 200) continue
      t.equal(res.statusCode, 401, `${sender.name}: ${name} → 401`)
    }
  }
  await withClient(databaseUrl, async client => {
    t.equal((await client.query('SELECT count(*)::int AS n FROM ops.runs')).rows[0].n <= senders.length, true, 'at most the upper-cased variants stored')
  })
  t.equal((await app.inject('/healthz')).statusCode, 200, 'still alive')
})

tap.test('bodies', async t => {
  const { app, databaseUrl } = await build(t, { BODY_LIMIT_BYTES: '65536' })
  const padTo = (size: number, id: string): string => {
    const head = `{"id":"${id}","type":"x","pad":"`
    return head + 'a'.repeat(size - head.length - 2) + '"}'
  }
  const cases: Array<[string, InjectOptions, number, string?]> = [
    ['empty body', stripeDelivery(''), 400],
    ['exactly at the limit', stripeDelivery(padTo(65536, 'evt_at_limit')), 200],
    ['one byte over the limit', stripeDelivery(padTo(65537, 'evt_over_limit')), 413, 'body_too_large'],
    ['invalid UTF-8', { ...stripeDelivery('x'), payload: Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]) }, 401],
    ['10,000 levels of nesting', stripeDelivery(`{"id":"evt_deep_h","type":"x","d":${'['.repeat(10000)}${']'.repeat(10000)}}`), 400, 'payload_too_deep'],
    ['64 levels (the limit) inside strings do not count', stripeDelivery(`{"id":"evt_deep_ok","type":"x","s":"${'[{'.repeat(100)}\\"","d":${'['.repeat(62)}${']'.repeat(62)}}`), 200],
    ['long numbers (kept exactly)', stripeDelivery('{"id":"evt_long_numbers","type":"x","m":123456789012345678901234567890.000000000000000000001}'), 200],
    ['a number past what PostgreSQL stores (1e999999)', stripeDelivery('{"id":"evt_huge_number","type":"x","n":1e999999}'), 400, 'unstorable_payload'],
    ['__proto__ key', stripeDelivery('{"id":"evt_proto","type":"x","__proto__":{"polluted":true}}'), 400, 'malformed_payload'],
    ['constructor.prototype key', stripeDelivery('{"id":"evt_ctor","type":"x","constructor":{"prototype":{"polluted":true}}}'), 400, 'malformed_payload'],
    ['JSON body sent as text/plain', { ...stripeDelivery(stripeEvent()), headers: { ...stripeDelivery(stripeEvent()).headers, 'content-type': 'text/plain' } }, 415],
    ['JSON array, not an event', stripeDelivery('[1,2,3]'), 400, 'malformed_payload']
  ]
  for (const [name, request, status, reason] of cases) {
    const res = await app.inject(request)
    t.equal(res.statusCode, status, `${name} → ${status}`)
    if (reason !== undefined) t.equal(res.json().reason, reason, `${name}: ${reason}`)
  }
  await withClient(databaseUrl, async client => {
    // Refused before anything is stored: no run, so no handler ever sees such a key.
    const { rows: [refused] } = await client.query("SELECT count(*)::int AS n FROM ops.runs WHERE idempotency_key IN ('evt_proto', 'evt_ctor')")
    t.equal(refused.n, 0, '__proto__ and constructor.prototype payloads: no run stored')
    const { rows: [run] } = await client.query("SELECT payload->>'m' AS m FROM ops.runs WHERE idempotency_key = 'evt_long_numbers'")
    t.equal(run.m, '123456789012345678901234567890.000000000000000000001', 'stored digit for digit (jsonb numeric)')
  })

  // A body claiming a content-encoding hookgate does not decode: the signed bytes are what arrived.
  const event = stripeEvent()
  const gz = stripeDelivery(event)
  const res = await app.inject({ ...gz, headers: { ...gz.headers, 'content-encoding': 'gzip' } })
  t.equal(res.statusCode, 200, 'content-encoding: gzip claimed on plain JSON: nothing decoded, the signed bytes verify')
  t.equal(res.json().status, 'accepted')
  await withClient(databaseUrl, async client => {
    const { rows } = await client.query("SELECT idempotency_key FROM ops.runs WHERE idempotency_key IN ('evt_proto', 'evt_ctor', 'evt_over_limit', 'evt_deep_h')")
    t.same(rows, [], 'none of the refused bodies stored')
  })
})

const stripe = new Stripe('sk_test_hookgate')

tap.test('bodies are stored as the bytes that were signed: multi-byte UTF-8 exactly, invalid UTF-8 as read', async t => {
  const { app, databaseUrl } = await build(t)
  // Vietnamese with diacritics (SePay's transfer contents), a four-byte emoji, an escaped quote.
  const utf8 = Buffer.from('{"id":"evt_utf8","type":"x","content":"Chuyển khoản 🎉 \\"ok\\"","n":1}')
  // 0xff 0xfe is no UTF-8: each bad byte is read as U+FFFD, the rest of the body as sent.
  const invalid = Buffer.concat([Buffer.from('{"id":"evt_not_utf8","type":"x","s":"a'), Buffer.from([0xff, 0xfe]), Buffer.from('b"}')])
  for (const body of [utf8, invalid]) {
    // Stripe's scheme over the bytes: the SDK signs strings only. It checks the UTF-8 body's header; it
    // decodes a body to a string before its HMAC, so it can neither make nor check one for invalid UTF-8.
    const timestamp = Math.floor(Date.now() / 1000)
    const header = `t=${timestamp},v1=${createHmac('sha256', STRIPE_SECRET).update(`${timestamp}.`).update(body).digest('hex')}`
    if (body === utf8) t.ok(stripe.webhooks.constructEvent(body, header, STRIPE_SECRET), 'the SDK accepts the header for these bytes')
    const res = await app.inject({ method: 'POST', url: '/webhooks/stripe', headers: { 'content-type': 'application/json', 'stripe-signature': header }, payload: body })
    t.equal(res.statusCode, 200)
    t.equal(res.json().status, 'accepted')
  }
  await withClient(databaseUrl, async client => {
    const { rows } = await client.query("SELECT idempotency_key, payload->>'content' AS content, payload->>'s' AS s, payload::text AS text FROM ops.runs ORDER BY idempotency_key")
    t.equal(rows[0].s, 'a\uFFFD\uFFFDb', 'invalid UTF-8: U+FFFD for each bad byte')
    t.equal(rows[1].content, 'Chuyển khoản 🎉 "ok"', 'multi-byte UTF-8 stored exactly')
    t.same(JSON.parse(rows[1].text), JSON.parse(utf8.toString()), 'the whole body, as sent')
  })
})

/** Raw bytes to the listening gateway; resolves with what came back (or how the socket ended). */
async function raw (port: number, data: string | Buffer, { waitMs = 3000 } = {}): Promise<string> {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    let answer = ''
    const done = (how: string): void => { clearTimeout(timer); socket.destroy(); resolve(answer === '' ? how : answer) }
    const timer = setTimeout(() => { done('no answer') }, waitMs)
    socket.on('data', chunk => { answer += chunk.toString() })
    socket.on('end', () => { done('closed') })
    socket.on('error', err => { done(`error ${err.message}`) })
    socket.write(data)
  })
}

tap.test('HTTP: long URLs and headers, unknown methods, path traversal, unfinished chunked bodies, idle sockets', async t => {
  const { app } = await build(t, { HTTP_REQUEST_TIMEOUT_MS: '2000' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  t.match(await raw(port, `GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 431/, 'a 20 KB URL: 431')
  // Node answers 431 and closes while the client is still writing its megabyte: whether the client
  // reads the 431 or the reset first is up to the kernel. Either way nothing is stored or parsed.
  t.match(await raw(port, `POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nstripe-signature: ${'v'.repeat(1024 * 1024)}\r\n\r\n`), /^HTTP\/1\.1 431|closed|error/, 'a 1 MB header: 431 or closed')
  t.match(await raw(port, 'BREW /webhooks/stripe HTTP/1.1\r\nHost: x\r\n\r\n'), /^HTTP\/1\.1 400 /, 'an unknown method: 400')
  t.match(await raw(port, 'PATCH /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'), /^HTTP\/1\.1 404/, 'a method the route does not take: 404')
  for (const [path, status] of [['/webhooks/../admin/runs', 404], ['/webhooks/%2e%2e/admin/runs', 404], ['/webhooks/stripe/../../etc/passwd', 404], ['/webhooks/..%2f..%2fetc%2fpasswd', 404], ['/webhooks/%00', 404]] as const) {
    const res = await app.inject({ method: 'POST', url: path, payload: '{}', headers: { 'content-type': 'application/json' } })
    t.equal(res.statusCode, status, `${path} → ${status}`)
  }
  const started = Date.now()
  const chunked = await raw(port, 'POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"id"\r\n', { waitMs: 10_000 })
  t.ok(Date.now() - started < 8000, `a chunked body that never ends is cut off (${Date.now() - started} ms: ${chunked.split('\r\n')[0]})`)

  // Many idle keep-alive connections do not stop the gateway from serving.
  const idle = await Promise.all(Array.from({ length: 300 }, async () => await new Promise<ReturnType<typeof connect>>(resolve => {
    const socket = connect(port, '127.0.0.1', () => { resolve(socket) })
    socket.on('error', () => {})
  })))
  const delivery = stripeDelivery(stripeEvent())
  const res = await fetch(`http://127.0.0.1:${port}${delivery.url}`, { method: 'POST', headers: delivery.headers, body: delivery.payload })
  t.equal(res.status, 200, 'served with 300 idle sockets open')
  for (const socket of idle) socket.destroy()
})

tap.test('a forged flood does not stop real deliveries', async t => {
  const { app } = await build(t, { AUTH_FAILURE_LIMIT: '50' })
  const forged = Array.from({ length: 400 }, () => app.inject(stripeDelivery(stripeEvent(), { 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'ab'.repeat(32)}` })))
  // Stripe delivers from its own addresses: the flood's client is limited, Stripe is not.
  const real = Array.from({ length: 20 }, async () => await app.inject({ ...stripeDelivery(stripeEvent()), remoteAddress: '3.18.12.63' }))
  const [forgedAnswers, realAnswers] = await Promise.all([Promise.all(forged), Promise.all(real)])
  t.ok(forgedAnswers.every(r => r.statusCode === 401 || r.statusCode === 429), 'every forged delivery refused')
  t.ok(forgedAnswers.filter(r => r.statusCode === 429).length >= 300, 'past the limit they are 429, audited in aggregate')
  t.ok(realAnswers.every(r => r.statusCode === 200 && r.json().status === 'accepted'), 'every real delivery accepted')
})

tap.test('timing: no comparison returns early when a presented key differs in length from the secret', async t => {
  // node:crypto's timingSafeEqual, counted: each candidate secret must be compared once, on
  // equal-length inputs, whatever the length of what was presented (hash both sides first).
  const crypto = await import('node:crypto')
  const calls: Array<[number, number]> = []
  const counting = {
    ...crypto,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      calls.push([a.byteLength, b.byteLength])
      return crypto.timingSafeEqual(a, b)
    }
  }
  const signatures = await t.mockImport<typeof import('../src/signatures.js')>('../src/signatures.js', { 'node:crypto': counting })
  const { apiKeyScheme } = await t.mockImport<typeof import('../src/schemes/api-key.js')>('../src/schemes/api-key.js', { '../src/signatures.js': signatures })
  const secrets = ['sk_live_0123456789abcdef', 'sk_old_key']
  const scheme = apiKeyScheme({ prefixes: ['Bearer '] })
  for (const length of [1, 9, 10, 11, 23, 24, 25, 200]) {
    calls.length = 0
    const result = scheme.verify({ authorization: `Bearer ${'k'.repeat(length)}` }, secrets)
    t.equal(result.ok, false)
    t.equal(calls.length, secrets.length, `key of ${length} chars: every secret compared`)
    t.ok(calls.every(([a, b]) => a === b && a === 32), `key of ${length} chars: digests of equal length`)
  }
  calls.length = 0
  t.equal(signatures.constantTimeEqual('short', 'a much longer secret value'), false)
  t.same(calls, [[32, 32]], 'constantTimeEqual compares hashes, never the raw lengths')
})
