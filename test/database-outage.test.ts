import { createServer, connect, type Socket } from 'node:net'
import t from 'tap'
import { build, freshDatabase, stripeDelivery, stripeEvent, withClient } from './helper.js'

/**
 * A TCP proxy between the gateway and its (real) database, so a test can take the database away:
 * `down` refuses every connection, `blackhole` accepts and never answers (a partition).
 */
async function databaseProxy (target: URL) {
  let mode: 'up' | 'down' | 'blackhole' = 'up'
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    if (mode === 'down') return client.destroy()
    if (mode === 'blackhole') return
    const upstream = connect(Number(target.port), target.hostname)
    sockets.add(upstream)
    upstream.on('close', () => { sockets.delete(upstream); client.destroy() })
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    // In a partition the packets of open connections vanish: nothing errors, nothing arrives.
    client.on('data', chunk => { if (mode === 'up') upstream.write(chunk) })
    upstream.on('data', chunk => { if (mode === 'up') client.write(chunk) })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = new URL(target)
  url.hostname = '127.0.0.1'
  url.port = String((server.address() as { port: number }).port)
  return {
    url: url.toString(),
    set (next: typeof mode) {
      // Down: every connection is cut. Blackhole: open connections stay open and go silent.
      if (next === 'down' || mode === 'blackhole') for (const socket of sockets) socket.destroy()
      mode = next
    },
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

t.test('database unreachable: 503 + Retry-After, never a 2xx, and recovery without a restart', async t => {
  const databaseUrl = await freshDatabase(t)
  const proxy = await databaseProxy(new URL(databaseUrl))
  t.teardown(proxy.close)
  const { app, logs } = await build(t, { DATABASE_URL: proxy.url, DB_CONNECT_TIMEOUT_MS: '500', DB_QUERY_TIMEOUT_MS: '1000' })
  const stored = async (id: unknown) => await withClient(databaseUrl, async client =>
    (await client.query('SELECT count(*)::int AS n FROM ops.runs WHERE idempotency_key = $1', [id])).rows[0].n as number)

  t.equal((await app.inject(stripeDelivery(stripeEvent()))).statusCode, 200, 'up: accepted')

  for (const mode of ['down', 'blackhole'] as const) {
    proxy.set(mode)
    const event = stripeEvent()
    const started = Date.now()
    const res = await app.inject(stripeDelivery(event))
    const elapsed = Date.now() - started
    t.equal(res.statusCode, 503, `${mode}: 503`)
    t.equal(res.headers['retry-after'], '5', `${mode}: Retry-After`)
    t.equal(res.json().error, 'service_unavailable')
    t.ok(elapsed < 3500, `${mode}: answered in ${elapsed} ms, bounded by the timeouts`)
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(ready.statusCode, 503, `${mode}: not ready`)
    t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, `${mode}: still alive`)

    proxy.set('up')
    t.equal(await stored(event.id), 0, `${mode}: nothing was stored for the 503`)
    const retried = await app.inject(stripeDelivery(event))
    t.equal(retried.statusCode, 200, `${mode}: the sender's retry is accepted once the database is back`)
    t.equal(retried.json().status, 'accepted')
    t.equal(await stored(event.id), 1)
    t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, `${mode}: ready again`)
  }
  const unavailable = logs.filter(line => line.outcome === 'unavailable' && line.status === 503)
  t.equal(unavailable.length, 2, 'each 503 is in the delivery log')
  t.ok(unavailable.every(line => line.provider === 'stripe' && typeof line.event_id === 'string' && line.event_id.startsWith('evt_')), 'with the event it could not store')
})
