import { createHash } from 'node:crypto'
import t from 'tap'
import { build, stripeDelivery, stripeEvent } from './helper.js'

// Erasure on request: a customer's payloads go, the audit facts stay, and the erasure is audited.

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'

t.test('erasure by a JSON path value or a key: payloads erased, hashes, times, outcomes and history kept', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const admin = async (body: unknown, token = ADMIN_TOKEN) =>
    await app.inject({ method: 'POST', url: '/admin/erasure', headers: { authorization: `Bearer ${token}` }, payload: body as object })
  const customer = (id: string) => ({ data: { object: { id: 'pi_1', object: 'payment_intent', amount: 2000, customer: id, receipt_email: `${id}@example.com` } } })
  const deliver = async (event: Record<string, unknown>) => (await app.inject(stripeDelivery(event))).json() as { status: string, run_id: string }
  const run = async (runId: string) => (await app.pg.query('SELECT status, payload, headers, encode(body_sha256, \'hex\') AS sha, last_error, completed_at FROM ops.runs WHERE run_id = $1', [runId])).rows[0]

  const doneEvent = stripeEvent(customer('cus_A'))
  const waitingEvent = stripeEvent(customer('cus_A'))
  const busyEvent = stripeEvent(customer('cus_A'))
  const otherEvent = stripeEvent(customer('cus_B'))
  const [done, waiting, busy, other] = [await deliver(doneEvent), await deliver(waitingEvent), await deliver(busyEvent), await deliver(otherEvent)]
  await app.pg.query("UPDATE ops.runs SET status = 'completed', completed_at = now() WHERE run_id = $1", [done.run_id])
  await app.pg.query("UPDATE ops.runs SET status = 'processing', locked_by = 'w', locked_until = now() + interval '1 minute' WHERE run_id = $1", [busy.run_id])
  // A payload conflict on the completed run: its exception holds the other payload, with the customer's data too.
  t.equal((await deliver({ ...doneEvent, amount_changed: true })).status, 'conflict')
  const before = await run(done.run_id)

  const answer = await admin({ provider: 'stripe', path: ['data', 'object', 'customer'], value: 'cus_A', by: 'dpo', note: 'ticket 42' })
  t.equal(answer.statusCode, 200)
  t.same(answer.json().erased.sort(), [done.run_id, waiting.run_id].sort(), 'the runs of cus_A')
  t.same(answer.json().processing, [busy.run_id], 'a run being processed is left alone and listed')
  t.equal(answer.json().more, false)
  t.equal(answer.json().scanned, 4, 'by path: the runs read')

  const erased = await run(done.run_id)
  t.same(erased.payload, { erased: true })
  t.same(erased.headers, {})
  t.equal(erased.status, 'completed', 'the outcome is kept')
  t.equal(erased.sha, before.sha, 'the hash of the signed bytes is kept')
  t.same(erased.completed_at, before.completed_at, 'and the times')
  t.match(await run(waiting.run_id), { status: 'ignored', payload: { erased: true }, last_error: 'payload erased before it was processed' }, 'never processed now')
  t.match(await run(other.run_id), { status: 'received', payload: { data: { object: { customer: 'cus_B' } } } }, 'another customer is untouched')
  t.match(await run(busy.run_id), { status: 'processing', payload: { data: { object: { customer: 'cus_A' } } } })

  const { rows: [exception] } = await app.pg.query('SELECT details FROM ops.exceptions WHERE run_id = $1', [done.run_id])
  t.notOk('payload' in exception.details.copies[0], 'the conflicting payload is gone from the exception')
  t.equal(exception.details.copies[0].payload_erased, true)
  t.match(exception.details.copies[0].body_sha256, /^[0-9a-f]{64}$/, 'its hash stays')

  const { rows: history } = await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [done.run_id])
  t.same(history.map(e => e.type), ['received', 'payload_conflict', 'erased'], 'the history is kept, the erasure appended')
  t.same(history[2].data, {
    by: 'dpo',
    note: 'ticket 42',
    status_before: 'completed',
    matched: { path: ['data', 'object', 'customer'], value_sha256: createHash('sha256').update('cus_A').digest('hex') }
  })
  const { rows: [leak] } = await app.pg.query("SELECT count(*)::int AS n FROM ops.run_events e JOIN ops.runs r USING (run_id) WHERE r.run_id = ANY($1::uuid[]) AND e.data::text LIKE '%cus_A%'", [[done.run_id, waiting.run_id]])
  t.equal(leak.n, 0, 'the audit never stores the erased value')

  t.same(await deliver(waitingEvent), { status: 'duplicate', run_id: waiting.run_id }, 'a redelivery of the same bytes is still a duplicate')
  const again = (await admin({ provider: 'stripe', path: ['data', 'object', 'customer'], value: 'cus_A' })).json()
  t.same(again, { erased: [], processing: [busy.run_id], scanned: 4, next_cursor: null, more: false }, 'erased runs are not erased twice')

  const byKey = (await admin({ provider: 'stripe', idempotency_key: otherEvent.id, limit: 1 })).json()
  t.same(byKey, { erased: [other.run_id], processing: [], scanned: 0, next_cursor: other.run_id, more: true }, 'by key; `more` when the limit is reached')
  const { rows: [keyEvent] } = await app.pg.query("SELECT data FROM ops.run_events WHERE run_id = $1 AND type = 'erased'", [other.run_id])
  t.same(keyEvent.data.matched, { idempotency_key: otherEvent.id })

  for (const body of [
    { provider: 'stripe' },
    { provider: 'stripe', idempotency_key: 'evt_1', path: ['a'], value: 'x' },
    { provider: 'stripe', path: ['a'] },
    { provider: 'stripe', value: 'x' }
  ]) t.equal((await admin(body)).statusCode, 400, `refused: ${JSON.stringify(body)}`)
  t.equal((await admin({ provider: 'Stripe!', idempotency_key: 'x' })).statusCode, 400, 'a provider name out of pattern')
  t.equal((await admin({ provider: 'stripe', idempotency_key: 'x' }, 'wrong-token-0123456789')).statusCode, 401)
})

t.test('erasure leaves no copy behind: last error, history, exceptions; a redelivery keeps no body', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const email = 'jon.doe@example.com'
  const event = stripeEvent({ data: { object: { id: 'pi_9', object: 'payment_intent', customer: 'cus_Z', receipt_email: email } } })
  const { run_id: runId } = (await app.inject(stripeDelivery(event))).json() as { run_id: string }
  // What a destination and a handler echoed of the payload (the worker's finish writes these).
  await app.pg.query('UPDATE ops.runs SET status = \'failed\', completed_at = now(), last_error = $2 WHERE run_id = $1', [runId, `destination crm answered 400: {"error":"${email} exists"}`])
  await app.pg.query('INSERT INTO ops.run_events (run_id, type, data, tier) VALUES ($1, \'retrying\', $2::jsonb, \'live\'), ($1, \'exception\', $3::jsonb, \'live\')',
    [runId, JSON.stringify({ attempt: 1, error: `destination crm answered 400: {"error":"${email} exists"}` }), JSON.stringify({ attempt: 2, reason: `sor said: ${email} is closed` })])
  await app.pg.query('INSERT INTO ops.exceptions (run_id, reason, details) VALUES ($1, \'destination_conflict\', $2::jsonb)',
    [runId, JSON.stringify({ destination: 'crm', status: 409, response: `{"conflict":"${email}"}` })])
  t.equal((await app.inject(stripeDelivery({ ...event, extra: email }))).json().status, 'conflict', 'a conflicting copy holds the e-mail too')

  const answer = await app.inject({ method: 'POST', url: '/admin/erasure', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { provider: 'stripe', idempotency_key: event.id as string } })
  t.same(answer.json().erased, [runId])
  const leaks = async () => (await app.pg.query(`SELECT
      (SELECT count(*)::int FROM ops.runs WHERE run_id = $1 AND (payload::text || coalesce(last_error, '')) LIKE $2) AS runs,
      (SELECT count(*)::int FROM ops.run_events WHERE run_id = $1 AND data::text LIKE $2) AS events,
      (SELECT count(*)::int FROM ops.exceptions WHERE run_id = $1 AND details::text LIKE $2) AS exceptions`, [runId, `%${email}%`])).rows[0]
  t.same(await leaks(), { runs: 0, events: 0, exceptions: 0 }, 'the e-mail is nowhere in the run, its history or its exceptions')
  const { rows: [run] } = await app.pg.query('SELECT last_error FROM ops.runs WHERE run_id = $1', [runId])
  t.equal(run.last_error, 'destination crm answered 400: [erased]', 'what happened is kept, what was echoed is not')
  const { rows: [destination] } = await app.pg.query("SELECT details FROM ops.exceptions WHERE run_id = $1 AND reason = 'destination_conflict'", [runId])
  t.same(destination.details, { destination: 'crm', status: 409, details_erased: true })

  // Redeliveries after the erasure: the same bytes (a duplicate), and other bytes (a conflict): no body kept.
  t.equal((await app.inject(stripeDelivery(event))).json().status, 'duplicate')
  t.equal((await app.inject(stripeDelivery({ ...event, again: email }))).json().status, 'conflict')
  t.same(await leaks(), { runs: 0, events: 0, exceptions: 0 }, 'a redelivery of an erased key brings no copy back')
  const { rows: [conflict] } = await app.pg.query("SELECT details FROM ops.exceptions WHERE run_id = $1 AND reason = 'payload_conflict'", [runId])
  t.equal(conflict.details.deliveries, 2, 'the conflicting deliveries are still counted', { details: conflict.details })
})

t.test('erasure by path goes page by page: bounded calls, a cursor, every match found', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const ids: string[] = []
  for (let i = 0; i < 25; i++) {
    const event = stripeEvent({ data: { object: { id: `pi_${i}`, customer: i % 5 === 0 ? 'cus_P' : `cus_${i}` } } })
    ids.push((await app.inject(stripeDelivery(event))).json().run_id)
  }
  const erased: string[] = []
  let cursor: string | undefined
  let calls = 0
  do {
    const answer = (await app.inject({ method: 'POST', url: '/admin/erasure', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: { provider: 'stripe', path: ['data', 'object', 'customer'], value: 'cus_P', scan: 7, ...(cursor === undefined ? {} : { cursor }) } })).json()
    t.ok(answer.scanned <= 7, `call ${++calls}: ${answer.scanned as number} runs read, no more than asked`)
    erased.push(...answer.erased)
    cursor = answer.next_cursor ?? undefined
  } while (cursor !== undefined && calls < 10)
  t.equal(calls, 4, '25 runs, 7 a call')
  t.same(erased.sort(), ids.filter((_, i) => i % 5 === 0).sort(), 'every run of cus_P, once')
})
