import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import tap from 'tap'
import twilio from 'twilio'
import { sign as signGithub } from '@octokit/webhooks-methods'
import { build } from './helper.js'
import { TWILIO_PUBLIC_BASE_URL } from './senders.js'
import { CONFLICT_EXCERPT_CHARS, MAX_CONFLICT_COPIES } from '../src/plugins/ingest.js'

// Issue 28: what one captured, genuinely signed delivery can be made into. Signatures come from the
// providers' own libraries (twilio, @octokit/webhooks-methods); Shopify has none in Node, its HMAC is
// the one its docs give.

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'
const TWILIO_TOKEN = 'captured_twilio_auth_token'
const GITHUB_SECRET = 'captured github secret'
const SHOPIFY_SECRET = 'captured_shopify_secret'
const sid = (prefix: string) => `${prefix}${randomBytes(16).toString('hex')}`
const count = async (app: Awaited<ReturnType<typeof build>>['app'], sql: string, values: unknown[] = []) => (await app.pg.query(sql, values)).rows[0].n as number

/** A Twilio form delivery signed by twilio-node over `params`, whose body may be altered after signing. */
function twilioDelivery (params: Record<string, string>, body = new URLSearchParams(params).toString(), token = randomBytes(8).toString('hex')) {
  const path = '/webhooks/twilio'
  return {
    method: 'POST' as const,
    url: path,
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      'x-twilio-signature': twilio.getExpectedTwilioSignature(TWILIO_TOKEN, TWILIO_PUBLIC_BASE_URL + path, params),
      'i-twilio-idempotency-token': token
    },
    payload: body
  }
}

async function githubDelivery (payload: string, delivery: string) {
  return {
    method: 'POST' as const,
    url: '/webhooks/github',
    headers: { 'content-type': 'application/json', 'x-hub-signature-256': await signGithub(GITHUB_SECRET, payload), 'x-github-event': 'push', 'x-github-delivery': delivery },
    payload
  }
}

function shopifyDelivery (payload: string, topic: string, headers: Record<string, string | undefined> = {}) {
  const all: Record<string, string | undefined> = {
    'content-type': 'application/json',
    'x-shopify-hmac-sha256': createHmac('sha256', SHOPIFY_SECRET).update(payload).digest('base64'),
    'x-shopify-topic': topic,
    'x-shopify-shop-domain': 'example.myshopify.com',
    'x-shopify-api-version': '2025-01',
    'x-shopify-webhook-id': randomUUID(),
    'x-shopify-event-id': randomUUID(),
    ...headers
  }
  return { method: 'POST' as const, url: '/webhooks/shopify', headers: Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined)) as Record<string, string>, payload }
}

const env = {
  TWILIO_AUTH_TOKEN: TWILIO_TOKEN,
  GITHUB_WEBHOOK_SECRET: GITHUB_SECRET,
  SHOPIFY_WEBHOOK_SECRET: SHOPIFY_SECRET,
  PUBLIC_BASE_URL: TWILIO_PUBLIC_BASE_URL,
  ADMIN_TOKEN,
  NODE_ENV: 'production'
}

tap.test('Twilio: a captured body re-ordered, with `&=` appended or a pair repeated is the same content: a duplicate, no exception', async t => {
  const { app } = await build(t, env)
  const params = { MessageSid: sid('SM'), MessageStatus: 'delivered', AccountSid: sid('AC'), From: '+14158675309', To: '+18005551212' }
  const first = await app.inject(twilioDelivery(params))
  t.equal(first.json().status, 'accepted')
  const plain = new URLSearchParams(params).toString()
  const reordered = new URLSearchParams(Object.entries(params).reverse()).toString()
  const variants = [
    ...Array.from({ length: 50 }, (_, i) => `${plain}${'&='.repeat(i + 1)}`),
    reordered,
    `${plain}&From=${encodeURIComponent(params.From)}`
  ]
  const answers: Record<string, number> = {}
  for (const body of variants) {
    const res = await app.inject(twilioDelivery(params, body))
    const key = `${res.statusCode} ${String(res.json().status)}`
    answers[key] = (answers[key] ?? 0) + 1
  }
  t.same(answers, { '200 duplicate': variants.length }, `${variants.length} altered copies: each a duplicate of the first run`)
  t.equal(await count(app, 'SELECT count(*)::int AS n FROM ops.exceptions'), 0, 'no exception (651cd06: one open exception, with a copy, per altered body)')
  t.equal(await count(app, 'SELECT count(*)::int AS n FROM ops.runs'), 1)
})

tap.test('Twilio: key parameters come from the signed parameters, each once', async t => {
  const { app } = await build(t, env)
  const params = { MessageSid: sid('SM'), MessageStatus: 'delivered', To: '+18005551212' }
  t.equal((await app.inject(twilioDelivery(params))).json().status, 'accepted')
  // The signed string is names and values joined: moving `MessageStatus` into the SID's value signs alike.
  const resplit = `MessageSid=${params.MessageSid}MessageStatusdelivered&To=%2B18005551212`
  const res1 = await app.inject(twilioDelivery(params, resplit))
  t.same([res1.statusCode, res1.json().reason], [400, 'malformed_event_id'], 'a SID re-split with the status inside it: 400')
  const repeated = `${new URLSearchParams(params).toString()}&MessageStatus=delivered`
  const res2 = await app.inject(twilioDelivery(params, repeated))
  t.same([res2.statusCode, res2.json().reason], [400, 'ambiguous_event_id'], 'a key parameter sent twice: 400')
  // The status re-split into the next parameter: a new key, the same signed content: a replay.
  const statusResplit = `MessageSid=${params.MessageSid}&MessageStatus=deliveredTo%2B18005551212`
  const res3 = await app.inject(twilioDelivery(params, statusResplit))
  t.same([res3.statusCode, res3.json().status], [200, 'duplicate'], 'the status re-split: the same signed content, a duplicate')
  for (let i = 0; i < 10; i++) await app.inject(twilioDelivery(params, i % 2 === 0 ? resplit : repeated))
  t.equal(await count(app, 'SELECT count(*)::int AS n FROM ops.runs'), 1, 'one run from the capture (651cd06: 11)')
  const { rows } = await app.pg.query("SELECT data->>'reason' AS reason, count(*)::int AS n FROM ops.run_events WHERE type = 'rejected' GROUP BY 1 ORDER BY 1")
  t.same(rows, [{ reason: 'ambiguous_event_id', n: 6 }, { reason: 'malformed_event_id', n: 6 }], 'each refusal audited')
})

tap.test("Twilio: a call's <Gather> results are events of their own; a retry of one is a duplicate", async t => {
  const { app } = await build(t, env)
  const call = { CallSid: sid('CA'), CallStatus: 'in-progress', AccountSid: sid('AC'), From: '+14158675309', To: '+18005551212' }
  const first = await app.inject(twilioDelivery({ ...call, Digits: '1' }))
  const second = await app.inject(twilioDelivery({ ...call, Digits: '2' }))
  const retry = await app.inject(twilioDelivery({ ...call, Digits: '2' }))
  t.same([first.json().status, second.json().status, retry.json().status], ['accepted', 'accepted', 'duplicate'], 'two gathers, then a retry (651cd06: the second was a conflict)')
  // Status callback events are numbered: the same status twice is told apart by SequenceNumber.
  const ringing0 = await app.inject(twilioDelivery({ ...call, CallStatus: 'ringing', SequenceNumber: '0' }))
  const ringing0Again = await app.inject(twilioDelivery({ ...call, CallStatus: 'ringing', SequenceNumber: '0', Timestamp: 'later' }))
  t.same([ringing0.json().status, ringing0Again.json().status], ['accepted', 'conflict'], 'a numbered status callback is keyed by its number')
})

tap.test('GitHub: one body re-sent under another delivery id raises one exception that counts, a few copies at most', async t => {
  const { app } = await build(t, { ...env, AUTH_FAILURE_LIMIT: '1000' })
  const push = (n: number) => JSON.stringify({ ref: 'refs/heads/main', commits: [{ id: randomBytes(20).toString('hex'), message: `change ${n}`, pad: 'x'.repeat(300_000) }] })
  const targetId = randomUUID()
  const target = await app.inject(await githubDelivery(push(0), targetId))
  t.equal(target.json().status, 'accepted')
  // A captured body A under B's delivery id, 100 times; then 10 other bodies under it.
  const captured = push(1)
  const answers: string[] = []
  for (let i = 0; i < 100; i++) answers.push((await app.inject(await githubDelivery(captured, targetId))).json().status)
  t.same(new Set(answers), new Set(['conflict']), 'each answered 200 conflict (committed: GitHub must not retry it)')
  for (let i = 2; i < 12; i++) await app.inject(await githubDelivery(push(i), targetId))
  const { rows: exceptions } = await app.pg.query("SELECT exception_id, (details->>'deliveries')::int AS deliveries, jsonb_array_length(details->'copies') AS copies, (details->>'uncopied')::int AS uncopied FROM ops.exceptions")
  t.equal(exceptions.length, 1, 'one open exception for the run (651cd06: 110)')
  t.same([exceptions[0].deliveries, exceptions[0].copies, exceptions[0].uncopied], [110, MAX_CONFLICT_COPIES, 110 - 100 - (MAX_CONFLICT_COPIES - 1)],
    'it counts 110 deliveries, keeps one copy of each of the first distinct bodies, counts the rest')
  t.equal(await count(app, "SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'payload_conflict'"), 110, 'each delivery is still in the history (no body there)')

  const runId = target.json().run_id as string
  const detail = await app.inject({ url: `/admin/runs/${runId}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(detail.statusCode, 200)
  const copies = detail.json().exceptions[0].details.copies as Array<{ body_sha256: string, deliveries: number, excerpt: string, delivery: { body_bytes: number }, payload?: unknown }>
  t.equal(copies.length, MAX_CONFLICT_COPIES)
  t.notOk(copies.some(c => 'payload' in c), 'the admin API lists copies as excerpts')
  t.ok(copies.every(c => c.excerpt.length === CONFLICT_EXCERPT_CHARS && c.delivery.body_bytes > 300_000), 'each with its size')
  t.same(copies.map(c => c.deliveries), [100, 1, 1], 'and how many deliveries brought it')
  t.ok(detail.body.length < 500_000, `the run's answer is bounded: ${detail.body.length} bytes (a payload and three excerpts)`)
  t.equal(detail.json().events.length, 111, 'its history')
  const whole = await app.inject({ url: `/admin/exceptions/${String(exceptions[0].exception_id)}/copies/${copies[0].body_sha256}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.same(whole.json().payload, JSON.parse(captured), 'the whole copy, on its own')
  t.equal((await app.inject({ url: `/admin/exceptions/${String(exceptions[0].exception_id)}/copies/${'0'.repeat(64)}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).statusCode, 404)

  // Closed, the next conflict opens a new one.
  await app.inject({ method: 'POST', url: `/admin/exceptions/${String(exceptions[0].exception_id)}/dismiss`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: {} })
  await app.inject(await githubDelivery(captured, targetId))
  t.equal(await count(app, "SELECT count(*)::int AS n FROM ops.exceptions WHERE status = 'open'"), 1, 'a closed exception is not reopened: a new one counts what came after')
})

tap.test('conflicts arriving together (one batch, several batches) are counted exactly: kept copies and the rest', async t => {
  const { app } = await build(t, { ...env, AUTH_FAILURE_LIMIT: '1000' })
  const id = randomUUID()
  await app.inject(await githubDelivery('{"n":0}', id))
  // 30 at once, 5 distinct bodies: group commit puts several in one statement.
  const answers = await Promise.all(Array.from({ length: 30 }, async (_, i) => (await app.inject(await githubDelivery(`{"n":${1 + (i % 5)}}`, id))).json().status))
  t.same(new Set(answers), new Set(['conflict']))
  const { rows: [{ details }] } = await app.pg.query('SELECT details FROM ops.exceptions')
  const kept = (details.copies as Array<{ deliveries: number }>).reduce((sum, c) => sum + c.deliveries, 0)
  t.equal(details.deliveries, 30, 'every conflicting delivery counted')
  t.equal(details.copies.length, MAX_CONFLICT_COPIES, 'the first distinct bodies kept')
  t.equal(kept + Number(details.uncopied), 30, `each counted once: ${kept} on kept copies, ${String(details.uncopied)} on bodies not kept`)
  t.equal(details.uncopied, 12, 'two bodies not kept, six deliveries each')
})

tap.test('conflicts count toward the sender\'s limit: a client that makes many is limited', async t => {
  const { app } = await build(t, { ...env, AUTH_FAILURE_LIMIT: '5' })
  const id = randomUUID()
  await app.inject(await githubDelivery('{"n":0}', id))
  const statuses: number[] = []
  for (let i = 1; i <= 8; i++) statuses.push((await app.inject(await githubDelivery(`{"n":${i}}`, id))).statusCode)
  // The sixth is committed before it is counted: answered 200, and the client is limited from then on.
  t.same(statuses, [200, 200, 200, 200, 200, 200, 429, 429], 'six conflicts answered (committed), then 429 before the body is read (651cd06: 200 for ever)')
  t.equal(await count(app, "SELECT (details->>'deliveries')::int AS n FROM ops.exceptions"), 6)
})

tap.test('run history in a page is bounded: the first and latest events, and how many', async t => {
  const { app } = await build(t, env)
  const id = randomUUID()
  const body = '{"action":"ping"}'
  const first = (await app.inject(await githubDelivery(body, id))).json().run_id as string
  await app.pg.query('INSERT INTO ops.run_events (run_id, type, data, tier) SELECT $1, \'duplicate\', jsonb_build_object(\'n\', n), \'live\' FROM generate_series(1, 1200) AS n', [first])
  const detail = (await app.inject({ url: `/admin/runs/${first}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()
  t.equal(detail.events_total, 1201)
  t.equal(detail.events.length, 500, 'the first 100 and the latest 400')
  t.equal(detail.events[0].type, 'received', 'starting with how it arrived')
  t.equal(detail.events[499].data.n, 1200, 'ending with the latest')
})

tap.test('Shopify: the topic must agree with the body; X-Shopify-Event-Id is required', async t => {
  const { app } = await build(t, env)
  // Shopify's documented orders/create example (trimmed): the order names itself.
  const order = JSON.stringify({ id: 820982911946154500, admin_graphql_api_id: 'gid://shopify/Order/820982911946154508', email: 'jon@example.com', total_price: '403.00' })
  const topics = ['orders/create', 'orders/paid', 'orders/updated', 'orders/cancelled', 'orders/fulfilled', 'orders/partially_fulfilled', 'orders/edited', 'orders/delete',
    'refunds/create', 'products/create', 'products/update', 'customers/create', 'customers/update', 'draft_orders/create', 'fulfillments/create',
    'order_transactions/create', 'inventory_items/create', 'collections/create', 'app/uninstalled', 'carts/create']
  const answers: Record<string, number> = {}
  for (const topic of topics) {
    const res = await app.inject(shopifyDelivery(order, topic))
    const key = res.statusCode === 200 ? String(res.json().status) : String(res.json().reason)
    answers[key] = (answers[key] ?? 0) + 1
  }
  // The same bytes as two topics of one order are two events (orders/create and orders/paid may be
  // byte for byte the same); as another resource's topic they are refused.
  t.same(answers, { accepted: 8, topic_mismatch: 12 }, 'the order under its 8 topics accepted; under 12 other resources\' topics 400 (651cd06: 20 runs)')
  t.equal(await count(app, "SELECT count(*)::int AS n FROM ops.run_events WHERE type = 'rejected' AND data->>'reason' = 'topic_mismatch'"), 12, 'audited')

  const noEventId = await app.inject(shopifyDelivery(order, 'orders/create', { 'x-shopify-event-id': undefined }))
  t.same([noEventId.statusCode, noEventId.json().reason, noEventId.json().missing], [400, 'missing_headers', ['x-shopify-event-id']], 'as shopify-app-js: no event id, 400')
  // A body that names no resource cannot be checked: the replay guard (body and topic) holds it.
  const plain = JSON.stringify({ shop_id: 954889, shop_domain: 'example.myshopify.com' })
  t.equal((await app.inject(shopifyDelivery(plain, 'shop/redact'))).json().status, 'accepted')
  t.equal((await app.inject(shopifyDelivery(plain, 'shop/redact'))).json().status, 'duplicate', 'replayed under a new event id: a duplicate')
})
