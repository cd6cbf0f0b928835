import { request as httpRequest } from 'node:http'
import tap from 'tap'
import { build, stripeDelivery, stripeEvent, withClient } from './helper.js'

// Metrics, load shedding and the limit on authentication failures.

function metricValue (text: string, name: string, labels: string = ''): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${name}${labels === '' ? ' ' : `{${labels}} `}`))
  return line === undefined ? undefined : Number(line.split(' ').pop())
}

/** onResponse hooks (where deliveries are counted) run after inject() has its answer. */
async function settle (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 20))
}

tap.test('GET /metrics: deliveries, rejections, latency, queue, pool, event loop', async t => {
  const { app } = await build(t)
  const event = stripeEvent()
  t.equal((await app.inject(stripeDelivery(event))).statusCode, 200)
  t.equal((await app.inject(stripeDelivery(event))).statusCode, 200)
  t.equal((await app.inject(stripeDelivery(event, { 'stripe-signature': 't=1,v1=00' }))).statusCode, 401)
  await settle()
  const response = await app.inject('/metrics')
  t.equal(response.statusCode, 200)
  t.match(response.headers['content-type'], /^text\/plain/)
  const text = response.body
  t.equal(metricValue(text, 'hookgate_deliveries_total', 'provider="stripe",outcome="accepted"'), 1)
  t.equal(metricValue(text, 'hookgate_deliveries_total', 'provider="stripe",outcome="duplicate"'), 1)
  t.equal(metricValue(text, 'hookgate_deliveries_total', 'provider="stripe",outcome="rejected"'), 1)
  t.equal(metricValue(text, 'hookgate_rejections_total', 'provider="stripe",reason="timestamp_too_old"'), 1)
  t.equal(metricValue(text, 'hookgate_ingest_duration_seconds_count', 'provider="stripe",outcome="accepted"'), 1)
  t.equal(metricValue(text, 'hookgate_queue_depth'), 1, 'the accepted run waits (ROLE=ingest)')
  t.ok((metricValue(text, 'hookgate_queue_oldest_seconds') ?? -1) >= 0)
  t.equal(metricValue(text, 'hookgate_database_up'), 1)
  t.ok(metricValue(text, 'hookgate_db_pool_connections', 'pool="ingest",state="total"') !== undefined, 'the ingest plugin\'s pool')
  t.ok(metricValue(text, 'hookgate_db_pool_connections', 'pool="main",state="total"') !== undefined, 'the main pool')
  t.equal(metricValue(text, 'hookgate_ingest_pending'), 0, 'the ingest plugin\'s gauge: nothing pending')
  t.ok(metricValue(text, 'hookgate_nodejs_eventloop_lag_seconds') !== undefined, 'event-loop lag')
  t.notMatch(text, /whsec_|v1=/, 'no secret or signature in metrics')
})

tap.test('METRICS_PORT serves /metrics on its own listener only', async t => {
  const { app } = await build(t, { METRICS_PORT: '0', HOST: '127.0.0.1' })
  t.equal((await app.inject('/metrics')).statusCode, 404, 'not on the public listener')
  t.equal((await app.inject(stripeDelivery(stripeEvent()))).statusCode, 200)
  const { port } = app.metricsServer?.address() as { port: number }
  const response = await fetch(`http://127.0.0.1:${port}/metrics`)
  t.equal(response.status, 200)
  t.equal(metricValue(await response.text(), 'hookgate_deliveries_total', 'provider="stripe",outcome="accepted"'), 1)
  t.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404)
})

tap.test('in production /metrics is off the public port unless asked for', async t => {
  const { app: quiet, logs } = await build(t, { NODE_ENV: 'production' })
  t.equal((await quiet.inject('/metrics')).statusCode, 404, 'production, nothing set: not public (651cd06: 200 to anyone)')
  t.ok(logs.some(line => String(line.msg).startsWith('metrics are not served')), 'and the boot says how to get them')
  const { app: open } = await build(t, { NODE_ENV: 'production', METRICS_PUBLIC: 'true' })
  t.equal((await open.inject('/metrics')).statusCode, 200, 'METRICS_PUBLIC=true: public')
  const { app: dev } = await build(t)
  t.equal((await dev.inject('/metrics')).statusCode, 200, 'outside production: public by default')
})

tap.test('refusals past the limit: 429 before the body is read, aggregated audit rows, per client (IPv6 by /64)', async t => {
  const { app, databaseUrl } = await build(t, { AUTH_FAILURE_LIMIT: '5', AUTH_FAILURE_WINDOW_MS: '60000' })
  const forged = () => stripeDelivery(stripeEvent(), { 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}` })
  // Every refusal counts, whatever its status: a 401, a 415, a 400 and a headers-only 413.
  const refusals = [
    forged(),
    { ...forged(), headers: { ...forged().headers, 'content-type': 'text/plain' } },
    stripeDelivery('not json'),
    forged(),
    { method: 'POST' as const, url: '/webhooks/stripe', headers: { 'content-type': 'application/json', 'content-length': String(50 * 1024 * 1024) }, payload: '' }
  ]
  const statuses: number[] = []
  for (const request of [...refusals, forged(), forged(), forged()]) {
    const response = await app.inject(request)
    statuses.push(response.statusCode)
    if (response.statusCode === 429) {
      t.ok(Number(response.headers['retry-after']) > 0, 'Retry-After')
      t.same(response.json(), { error: 'too_many_requests', reason: 'too_many_refusals' })
    }
  }
  t.same(statuses.slice(0, 5), [401, 415, 400, 401, 413], 'refused for what they are while under the limit')
  t.same(statuses.slice(5), [429, 429, 429], 'past the limit: 429 (the first one counted, the next refused before their bodies)')
  const valid = await app.inject(stripeDelivery(stripeEvent()))
  t.equal(valid.statusCode, 429, 'a limited client is refused before its body is read, valid or not, until its window ends')
  t.ok(Number(valid.headers['retry-after']) > 0)
  const other = await app.inject({ ...stripeDelivery(stripeEvent()), remoteAddress: '10.9.8.7' })
  t.equal(other.statusCode, 200, 'another client is not limited')

  // IPv6: one subscriber's /64 is one client; another /64 is another.
  for (let i = 0; i < 6; i++) await app.inject({ ...forged(), remoteAddress: `2001:db8:1:2::${i + 1}` })
  const sameBlock = await app.inject({ ...stripeDelivery(stripeEvent()), remoteAddress: '2001:db8:1:2:ffff::9' })
  t.equal(sameBlock.statusCode, 429, 'another address of the same /64 is limited too')
  const otherBlock = await app.inject({ ...stripeDelivery(stripeEvent()), remoteAddress: '2001:db8:1:3::1' })
  t.equal(otherBlock.statusCode, 200, 'the next /64 is not')

  await app.close()
  await withClient(databaseUrl, async client => {
    const { rows: [{ n }] } = await client.query("SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'rejected'")
    t.equal(n, 10, 'five refusals of each client below the limit audited row by row')
    const { rows } = await client.query("SELECT data FROM ops.run_events WHERE type = 'rejected_aggregate' ORDER BY data->>'client', data->>'reason'")
    t.same(rows.map(r => [r.data.client, r.data.reason, r.data.count]), [
      ['127.0.0.1', 'no_matching_signature', 1],
      ['127.0.0.1', 'too_many_refusals', 3],
      ['2001:db8:1:2::/64', 'no_matching_signature', 1],
      ['2001:db8:1:2::/64', 'too_many_refusals', 1]
    ], 'past the limit: one row per client, reason and minute, with a count')
  })
})

tap.test('clientKey: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by its /64', async t => {
  const { clientKey } = await import('../src/plugins/protection.js')
  t.equal(clientKey('203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(clientKey('2001:0db8:0000:0001:aaaa:bbbb:cccc:dddd'), '2001:db8:0:1::/64')
  t.equal(clientKey('2001:db8:0:1::'), '2001:db8:0:1::/64')
  t.equal(clientKey('::1'), '0:0:0:0::/64')
  t.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
})

tap.test('load shedding: a full ingest queue answers 503 + Retry-After at once', async t => {
  const { app } = await build(t, { INGEST_MAX_PENDING: '2', INGEST_BATCH_CONCURRENCY: '1', INGEST_BATCH_SIZE: '1' })
  const responses = await Promise.all(Array.from({ length: 30 }, async () => await app.inject(stripeDelivery(stripeEvent()))))
  const shed = responses.filter(r => r.statusCode === 503)
  const accepted = responses.filter(r => r.statusCode === 200)
  t.ok(shed.length > 0, `${shed.length} shed`)
  t.ok(accepted.length >= 2, `${accepted.length} accepted`)
  t.equal(shed.length + accepted.length, 30, 'nothing else')
  t.equal(shed[0].headers['retry-after'], '5')
  t.same(shed[0].json().reason, 'overloaded')
  await settle()
  const metrics = (await app.inject('/metrics')).body
  t.equal(metricValue(metrics, 'hookgate_shed_total', 'cause="ingest_queue_full"'), shed.length)
})

tap.test('load shedding: a lagging event loop answers 503 to deliveries, health still answers', async t => {
  const { app } = await build(t, { UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '20' })
  // Keep the loop lagging (50 ms blocks) across one of under-pressure's samples (every second).
  const end = Date.now() + 1300
  while (Date.now() < end) {
    const until = Date.now() + 50
    while (Date.now() < until) { /* busy */ }
    await new Promise(resolve => setImmediate(resolve))
  }
  const delivery = await app.inject(stripeDelivery(stripeEvent()))
  t.equal(delivery.statusCode, 503)
  t.equal(delivery.headers['retry-after'], '5')
  t.equal(delivery.json().reason, 'overloaded')
  t.equal((await app.inject('/healthz')).statusCode, 200, '/healthz is exempt')
  t.equal((await app.inject('/metrics')).statusCode, 200, '/metrics is exempt')
})

tap.test('slow clients: the server has deliberate timeouts', async t => {
  const { app } = await build(t, { HTTP_REQUEST_TIMEOUT_MS: '2000' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  t.equal(app.server.requestTimeout, 2000)
  t.equal(app.server.headersTimeout, 2000)
  t.equal(app.server.keepAliveTimeout, 65000)
  // Headers that never end: the socket is closed (408 or reset), the server does not wait forever.
  const started = Date.now()
  const outcome = await new Promise<string>(resolve => {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/webhooks/stripe', headers: { 'content-type': 'application/json', 'content-length': '100' } })
    req.on('response', res => { resolve(`status ${res.statusCode}`) })
    req.on('error', err => { resolve(`error ${err.message}`) })
    req.flushHeaders()
    req.write('{"id":')
  })
  t.ok(Date.now() - started < 6000, `closed after ${Date.now() - started} ms (${outcome})`)
})

tap.test('unverified bodies share a budget: past it 503 + Retry-After before the body is read; one alone always fits', async t => {
  const { connect } = await import('node:net')
  const { app } = await build(t, { BODY_LIMIT_BYTES: String(1024 * 1024), UNVERIFIED_BODY_BUDGET_BYTES: String(2.5 * 1024 * 1024) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  /** Headers promising `length` bytes, and a little of the body: held by the gateway, unverified. */
  const slowSender = async (length: number) => await new Promise<import('node:net').Socket>(resolve => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: ${length}\r\n\r\n{"id":"evt_`)
      resolve(socket)
    })
    socket.on('error', () => {})
  })
  const held = [await slowSender(1024 * 1024), await slowSender(1024 * 1024)]
  await new Promise(resolve => setTimeout(resolve, 100))
  const metrics = async () => metricValue((await app.inject('/metrics')).body, 'hookgate_unverified_body_bytes')
  t.equal(await metrics(), 2 * 1024 * 1024, 'two forged 1 MB bodies held, by their Content-Length')
  const small = await fetch(`http://127.0.0.1:${port}/webhooks/stripe`, stripeFetch(stripeEvent()))
  t.equal(small.status, 200, 'a genuine small delivery still fits')
  const third = await fetch(`http://127.0.0.1:${port}/webhooks/stripe`, stripeFetch(stripeEvent({ pad: 'x'.repeat(900_000) })))
  t.equal(third.status, 503, 'a third large one does not: 503 before its body is read (651cd06: read, 40 × 25 MB took 724 MB)')
  t.equal(third.headers.get('retry-after'), '5', 'with Retry-After: the sender retries')
  for (const socket of held) socket.destroy()
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(await metrics(), 0, 'aborted bodies give their share back')
  const again = await fetch(`http://127.0.0.1:${port}/webhooks/stripe`, stripeFetch(stripeEvent({ pad: 'x'.repeat(900_000) })))
  t.equal(again.status, 200, 'then the large delivery goes through')

  // A delivery larger than the whole budget is taken when it is alone.
  const { app: tight } = await build(t, { BODY_LIMIT_BYTES: String(1024 * 1024), UNVERIFIED_BODY_BUDGET_BYTES: String(64 * 1024) })
  t.equal((await tight.inject(stripeDelivery(stripeEvent({ pad: 'x'.repeat(500_000) })))).statusCode, 200, 'one delivery alone, over the budget: taken')
})

function stripeFetch (event: Record<string, unknown>): RequestInit {
  const { headers, payload } = stripeDelivery(event)
  return { method: 'POST', headers, body: payload }
}
