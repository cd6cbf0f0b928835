import { createHash } from 'node:crypto'
import t from 'tap'
import { build, stripeDelivery, stripeEvent, stripeSignature, STRIPE_SECRET } from './helper.js'

t.test('delivering Stripe events through the HTTP path', async t => {
  const { app, logs } = await build(t)
  const runs = async (key: string) =>
    (await app.pg.query('SELECT run_id, status, event_type, payload, headers, encode(body_sha256, \'hex\') AS sha FROM ops.runs WHERE idempotency_key = $1', [key])).rows
  const eventsOf = async (runId: string) =>
    (await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [runId])).rows
  const rejections = async () =>
    (await app.pg.query('SELECT data FROM ops.run_events WHERE run_id IS NULL AND type = \'rejected\' ORDER BY id')).rows.map(r => r.data)

  await t.test('a new event is accepted and stored with its audit trail', async t => {
    const event = stripeEvent()
    const res = await app.inject(stripeDelivery(event))
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.equal(body.status, 'accepted')
    t.match(body.run_id, /^[0-9a-f-]{36}$/)
    const [run] = await runs(event.id as string)
    t.equal(run.run_id, body.run_id)
    t.equal(run.status, 'received')
    t.equal(run.event_type, 'payment_intent.succeeded')
    t.same(run.payload, event)
    t.notOk('stripe-signature' in run.headers, 'the signature is not stored')
    t.equal(run.headers['content-type'], 'application/json')
    t.same((await eventsOf(body.run_id)).map(e => e.type), ['received'])
  })

  await t.test('a redelivered Stripe event returns the first run id', async t => {
    const event = stripeEvent()
    const first = (await app.inject(stripeDelivery(event))).json()
    const again = await app.inject(stripeDelivery(event))
    t.equal(again.statusCode, 200)
    t.same(again.json(), { status: 'duplicate', run_id: first.run_id })
    t.equal((await runs(event.id as string)).length, 1)
    t.same((await eventsOf(first.run_id)).map(e => e.type), ['received', 'duplicate'])
  })

  await t.test('60 concurrent copies of one new event: all 2xx, exactly one run', async t => {
    const event = stripeEvent()
    const answers = await Promise.all(Array.from({ length: 60 }, () => app.inject(stripeDelivery(event))))
    t.ok(answers.every(res => res.statusCode === 200), 'every copy answered 200')
    const runIds = new Set(answers.map(res => res.json().run_id))
    t.equal(runIds.size, 1, 'every copy names the same run')
    t.equal(answers.filter(res => res.json().status === 'accepted').length, 1, 'exactly one accepted')
    t.equal((await runs(event.id as string)).length, 1)
    const history = await eventsOf([...runIds][0])
    t.equal(history.length, 60, 'every delivery appended one run event')
  })

  await t.test('a delivery that races another replica inserting the same event gets that replica\'s run', async t => {
    // Another replica's transaction holds the key, uncommitted: our INSERT waits on it, and after its
    // commit our statement's snapshot cannot see the row. The ingest must look again, not fail.
    const event = stripeEvent()
    const other = await app.pg.connect()
    t.teardown(() => other.release())
    await other.query('BEGIN')
    const sameBytes = createHash('sha256').update(JSON.stringify(event)).digest('hex')
    const { rows: [theirs] } = await other.query(
      `WITH key AS (INSERT INTO ops.run_keys (provider, idempotency_key, body_sha256) VALUES ('stripe', $1, decode($2, 'hex')) RETURNING run_id)
       INSERT INTO ops.runs (run_id, provider, idempotency_key, payload, body_sha256)
       SELECT run_id, 'stripe', $1, '{}', decode($2, 'hex') FROM key RETURNING run_id`, [event.id, sameBytes])
    const delivery = app.inject(stripeDelivery(event))
    for (let i = 0; i < 100; i++) {
      const { rows: [{ waiting }] } = await app.pg.query(
        "SELECT count(*)::int AS waiting FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
      if (waiting > 0) break
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    await other.query('COMMIT')
    const res = await delivery
    t.equal(res.statusCode, 200)
    t.same(res.json(), { status: 'duplicate', run_id: theirs.run_id })
    t.same((await eventsOf(theirs.run_id)).map(e => e.type), ['duplicate'])
  })

  await t.test('a pretty-printed payload with non-ASCII characters verifies (raw bytes)', async t => {
    // eslint-disable-next-line @typescript-eslint/no-loss-of-precision -- deliberate: past 2^53, as a sender may write it
    const payload = JSON.stringify(stripeEvent({ description: 'Café — 東京 💳', amount: 12345678901234567890 }), null, 2)
    const res = await app.inject(stripeDelivery(payload))
    t.equal(res.statusCode, 200)
    const [run] = await runs(JSON.parse(payload).id)
    t.equal(run.payload.description, 'Café — 東京 💳')
    t.equal(run.sha, createHash('sha256').update(payload).digest('hex'), 'the hash is of the exact bytes received')
  })

  await t.test('forged, stale and broken signatures: 401 with a reason, nothing stored, audited', async t => {
    const auditedBefore = (await rejections()).length
    const event = stripeEvent()
    const body = JSON.stringify(event)
    const now = Math.floor(Date.now() / 1000)
    const good = stripeSignature(body)
    const cases: Array<[string, Record<string, string>, string, string?]> = [
      ['wrong secret', { 'stripe-signature': stripeSignature(body, { secret: 'whsec_wrong' }) }, 'no_matching_signature'],
      ['missing header', { 'stripe-signature': '' }, 'missing_signature_header'],
      ['garbage header', { 'stripe-signature': 'not a signature' }, 'malformed_signature_header'],
      ['body changed after signing', { 'stripe-signature': good }, 'no_matching_signature', body.replace('payment_intent', 'refund')],
      ['timestamp outside the tolerance', { 'stripe-signature': stripeSignature(body, { timestamp: now - 3600 }) }, 'timestamp_too_old'],
      ['truncated hex (matches nothing, as in stripe-node)', { 'stripe-signature': good.slice(0, -2) }, 'no_matching_signature'],
      ['odd-length hex (matches nothing, as in stripe-node)', { 'stripe-signature': good.slice(0, -1) }, 'no_matching_signature'],
      ['signature for another payload', { 'stripe-signature': stripeSignature('{"id":"evt_x"}') }, 'no_matching_signature']
    ]
    for (const [name, headers, reason, tampered] of cases) {
      const res = await app.inject({ ...stripeDelivery(tampered ?? body), headers: { 'content-type': 'application/json', ...headers } })
      t.equal(res.statusCode, 401, name)
      t.same(res.json(), { error: 'unauthorized', reason }, name)
      t.notMatch(res.body, STRIPE_SECRET, 'no secret in the answer')
    }
    const header = { 'content-type': 'application/json' }
    const unsigned = await app.inject({ method: 'POST', url: '/webhooks/stripe', headers: header, payload: body })
    t.equal(unsigned.statusCode, 401, 'no signature header at all')
    t.equal((await runs(event.id as string)).length, 0, 'nothing accepted')
    const audited = await rejections()
    t.equal(audited.length - auditedBefore, cases.length + 1, 'every refusal is audited, once')
    const last = audited[audited.length - 1]
    t.match(last, { provider: 'stripe', reason: 'missing_signature_header', status: 401, body_bytes: body.length, client_ip: String })
    t.match(last.body_sha256, /^[0-9a-f]{64}$/)
    t.notOk(JSON.stringify(audited).includes('payment_intent'), 'the unauthenticated body is never stored')
  })

  await t.test('a valid signature over malformed JSON is a 400', async t => {
    for (const payload of ['{"id": "evt_1", ', '', 'null', '"evt"', '[1,2]', '{"__proto__": {"x": 1}, "id": "evt_p"}']) {
      const res = await app.inject(stripeDelivery(payload))
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.equal(res.json().reason, 'malformed_payload')
    }
    const { rows: [stored] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE idempotency_key IN ('evt_1', 'evt_p')")
    t.equal(stored.n, 0, 'no run stored for any of them (a __proto__ key included)')
  })

  await t.test('a signed event without an id is a 400, never a made-up key', async t => {
    for (const id of [undefined, '', 42.5, null, { nested: true }, 'x'.repeat(256)]) {
      const res = await app.inject(stripeDelivery(stripeEvent({ id })))
      t.equal(res.statusCode, 400, `id ${JSON.stringify(id)?.slice(0, 20)}`)
      t.same(res.json(), { error: 'bad_request', reason: 'missing_event_id' })
    }
    const count = (await app.pg.query('SELECT count(*)::int AS n FROM ops.runs WHERE idempotency_key NOT LIKE \'evt_%\'')).rows[0].n
    t.equal(count, 0)
  })

  await t.test('a payload PostgreSQL cannot store as JSON is a 400, not a 5xx', async t => {
    const res = await app.inject(stripeDelivery('{"id": "evt_nul", "type": "x", "note": "\\u0000"}'))
    t.equal(res.statusCode, 400)
    t.equal(res.json().reason, 'unstorable_payload')
  })

  await t.test('a body over the limit is a 413 and the process stays healthy', async t => {
    const big = JSON.stringify(stripeEvent({ padding: 'x'.repeat(1024 * 1024) }))
    const res = await app.inject(stripeDelivery(big))
    t.equal(res.statusCode, 413)
    t.same(res.json(), { error: 'payload_too_large', reason: 'body_too_large' })
    t.equal((await app.inject(stripeDelivery(stripeEvent()))).statusCode, 200, 'the next delivery is accepted')
    t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  })

  await t.test('another media type is refused (415) and audited', async t => {
    const res = await app.inject({ ...stripeDelivery(stripeEvent()), headers: { 'content-type': 'text/plain', 'stripe-signature': 't=1,v1=00' } })
    t.equal(res.statusCode, 415)
    t.equal(res.json().reason, 'invalid_media_type')
  })

  await t.test('unknown provider is a 404, a wrong method is a 404', async t => {
    const unknown = await app.inject({ ...stripeDelivery(stripeEvent()), url: '/webhooks/nope' })
    t.equal(unknown.statusCode, 404)
    t.equal(unknown.json().error, 'not_found')
    for (const method of ['GET', 'PUT', 'DELETE'] as const) {
      t.equal((await app.inject({ method, url: '/webhooks/stripe' })).statusCode, 404, method)
    }
    t.equal((await app.inject({ method: 'POST', url: '/webhooks/..%2f..%2fetc%2fpasswd' })).statusCode, 404, 'path traversal')
  })

  await t.test('the request id comes from the balancer or is generated, and is echoed', async t => {
    const given = await app.inject({ ...stripeDelivery(stripeEvent()), headers: { ...stripeDelivery(stripeEvent()).headers, 'x-request-id': 'lb-1234' } })
    t.equal(given.headers['x-request-id'], 'lb-1234')
    const hostile = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'a b\u0001c' } })
    t.match(hostile.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'an unsafe id is replaced')
  })

  await t.test('one log line per delivery, with no body, signature or secret', async t => {
    const lines = logs.filter(line => line.msg === 'delivery')
    const accepted = lines.find(line => line.outcome === 'accepted')
    t.match(accepted, { provider: 'stripe', event_id: /^evt_/, event_type: 'payment_intent.succeeded', run_id: String, status: 200, ms: Number, request_id: String })
    t.ok(lines.some(line => line.outcome === 'duplicate'))
    t.ok(lines.some(line => line.outcome === 'rejected' && line.reason === 'no_matching_signature' && line.status === 401))
    const all = JSON.stringify(logs)
    t.notOk(all.includes(STRIPE_SECRET), 'no secret')
    t.notOk(/v1=[0-9a-f]{64}/.test(all), 'no signature')
    t.notOk(all.includes('pi_123'), 'no payload')
  })
})
