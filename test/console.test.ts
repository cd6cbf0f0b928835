import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build, stripeDelivery, stripeEvent } from './helper.js'

// The operator console's guarantees, through HTTP (a real browser drives it in test/browser/).

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'

/** A cookie jar of one: the console's session cookie, as a browser would keep it. */
function client (app: FastifyInstance) {
  let cookie = ''
  const request = async (method: 'GET' | 'POST', url: string, form?: Record<string, string>) => {
    const res = await app.inject({
      method,
      url,
      headers: { cookie, ...(form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }) },
      payload: form === undefined ? undefined : new URLSearchParams(form).toString()
    })
    const set = res.headers['set-cookie']
    const value = (Array.isArray(set) ? set : set === undefined ? [] : [set]).find(c => c.startsWith('hookgate_console='))
    if (value !== undefined) cookie = value.split(';')[0]
    return res
  }
  const csrf = (body: string): string => /name="_csrf" value="([^"]+)"/.exec(body)?.[1] ?? ''
  return {
    request,
    csrf,
    async signIn (token = ADMIN_TOKEN) {
      const form = await request('GET', '/console/sign-in')
      return await request('POST', '/console/sign-in', { _csrf: csrf(form.body), token, name: 'ana' })
    },
    get cookie () { return cookie }
  }
}

t.test('signed out, every page sends the operator to sign in; signed in, the pages answer', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const run = (await app.inject(stripeDelivery(stripeEvent()))).json()
  const browser = client(app)
  for (const url of ['/console', '/console/runs', `/console/runs/${run.run_id as string}`, '/console/exceptions', '/console/refusals']) {
    const res = await browser.request('GET', url)
    t.equal(res.statusCode, 303, `${url}: 303`)
    t.equal(res.headers.location, '/console/sign-in', `${url}: to the sign-in page`)
  }
  const signedIn = await browser.signIn()
  t.equal(signedIn.statusCode, 303)
  t.equal(signedIn.headers.location, '/console')
  const cookie = String(signedIn.headers['set-cookie'])
  t.match(cookie, /HttpOnly/i, 'HttpOnly')
  t.match(cookie, /SameSite=Strict/i, 'SameSite=Strict')
  t.match(cookie, /Path=\/console/, 'scoped to the console')
  for (const url of ['/console', '/console?range=day', '/console/runs', `/console/runs/${run.run_id as string}`, '/console/exceptions', '/console/refusals']) {
    t.equal((await browser.request('GET', url)).statusCode, 200, `${url}: 200 signed in`)
  }
  const repeated = stripeEvent()
  await app.inject(stripeDelivery(repeated))
  t.equal((await app.inject(stripeDelivery(repeated))).json().status, 'duplicate')
  const overview = await browser.request('GET', '/console')
  t.match(overview.body, />stripe<\/text>/, 'the chart has the new runs by provider')
  t.match(overview.body, />duplicate<\/text>/, 'and the duplicates, another outcome')
  const list = await browser.request('GET', '/console/runs?provider=stripe')
  t.match(list.body, run.run_id, 'the delivery sent a moment before is listed')
  const signedOut = await browser.request('POST', '/console/sign-out', { _csrf: browser.csrf(list.body) })
  t.equal(signedOut.headers.location, '/console/sign-in')
  t.equal((await browser.request('GET', '/console')).statusCode, 303, 'signed out again')
})

t.test('a wrong token is refused and counts toward the client\'s sign-in limit', async t => {
  const { app } = await build(t, { ADMIN_TOKEN, ADMIN_SIGN_IN_LIMIT: '3', AUTH_FAILURE_LIMIT: '3' })
  // Forged deliveries from the operator's address (an office NAT) past the refusal limit...
  for (let i = 0; i < 6; i++) await app.inject({ ...stripeDelivery(stripeEvent()), headers: { 'content-type': 'application/json', 'stripe-signature': 't=1,v1=00' } })
  t.equal((await app.inject(stripeDelivery(stripeEvent()))).statusCode, 429, 'limit that address\'s deliveries')
  const browser = client(app)
  t.equal((await browser.signIn()).statusCode, 303, 'but never lock its operator out (651cd06: 429)')
  const statuses = []
  for (let i = 0; i < 5; i++) statuses.push((await client(app).signIn('not-the-token')).statusCode)
  t.same(statuses, [401, 401, 401, 429, 429], 'wrong tokens: refused, then limited in their own bucket')
  t.equal((await client(app).signIn()).statusCode, 429, 'even the right token, until the window ends')
})

t.test('a state change without the CSRF token is refused', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const run = (await app.inject(stripeDelivery(stripeEvent()))).json()
  const browser = client(app)
  await browser.signIn()
  const page = await browser.request('GET', `/console/runs/${run.run_id as string}`)
  t.match(page.body, /<th>retention<\/th><td>dropped with its day<\/td>/, 'a new run goes with its day')
  await app.pg.query("UPDATE ops.runs SET tier = 'held' WHERE run_id = $1", [run.run_id])
  t.match((await browser.request('GET', `/console/runs/${run.run_id as string}`)).body, /kept past its day for review/, 'a held run says so')
  const detail = await app.inject({ method: 'GET', url: `/admin/runs/${run.run_id as string}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  t.equal(detail.json().tier, 'held', 'and the admin API')
  const forged = await browser.request('POST', `/console/runs/${run.run_id as string}/replay`, { note: 'no token' })
  t.equal(forged.statusCode, 403, 'no token: 403')
  const wrong = await browser.request('POST', `/console/runs/${run.run_id as string}/replay`, { _csrf: 'x'.repeat(40), note: 'wrong token' })
  t.equal(wrong.statusCode, 403, 'a wrong token: 403')
  const { rows: before } = await app.pg.query("SELECT count(*)::int AS n FROM ops.run_events WHERE run_id = $1 AND type = 'replay_requested'", [run.run_id])
  t.equal(before[0].n, 0, 'nothing was replayed')
  const replayed = await browser.request('POST', `/console/runs/${run.run_id as string}/replay`, { _csrf: browser.csrf(page.body), note: 'from the console' })
  t.equal(replayed.statusCode, 303)
  const { rows: [event] } = await app.pg.query("SELECT data FROM ops.run_events WHERE run_id = $1 AND type = 'replay_requested'", [run.run_id])
  t.same(event.data, { by: 'console:ana', note: 'from the console' }, 'replayed once, audited with who signed in')
})

t.test('payload text is shown as text: no markup from a payload reaches the page, and no script may run', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const hostile = stripeEvent({ type: '<script>alert(1)</script>', data: { object: { name: '"><img src=x onerror=alert(2)>', note: "'; alert(3); '", marker: '__CSRF__' } } })
  const run = (await app.inject(stripeDelivery(hostile))).json()
  const browser = client(app)
  await browser.signIn()
  const page = await browser.request('GET', `/console/runs/${run.run_id as string}`)
  t.equal(page.statusCode, 200)
  t.notMatch(page.body, /<script>alert|<img src=x/, 'no markup from the payload')
  t.match(page.body, '&lt;script&gt;alert(1)&lt;/script&gt;', 'the event type, escaped')
  t.match(page.body, '&quot;&gt;&lt;img src=x onerror=alert(2)&gt;', 'the payload, escaped')
  t.match(page.body, '&quot;marker&quot;: &quot;__CSRF__&quot;', 'shown as sent, whatever it looks like')
  const list = await browser.request('GET', '/console/runs')
  t.notMatch(list.body, /<script>alert/, 'nor in the list')
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, "default-src 'none'", 'a strict Content-Security-Policy')
  t.notMatch(csp, /script-src/, 'that allows no script')
  t.equal(page.headers['x-frame-options'], 'SAMEORIGIN')
})

t.test('an exception is resolved from the console with a note, and who decided is recorded', async t => {
  const { app } = await build(t, { ADMIN_TOKEN })
  const event = stripeEvent()
  const run = (await app.inject(stripeDelivery(event))).json()
  t.equal((await app.inject(stripeDelivery({ ...event, amount: 1 }))).json().status, 'conflict', 'a payload conflict raises an exception')
  const browser = client(app)
  await browser.signIn()
  const page = await browser.request('GET', `/console/runs/${run.run_id as string}`)
  t.match(page.body, 'payload_conflict')
  t.match(page.body, /1 conflicting delivery; 1 distinct body kept/, 'the run page counts the conflict')
  t.notMatch(page.body, /<span class="diff">/, 'and lists its copy as an excerpt, not side by side')
  const exceptionId = /action="\/console\/exceptions\/([0-9a-f-]{36})\/resolve"/.exec(page.body)?.[1] ?? ''
  const compared = await browser.request('GET', `/console/exceptions/${exceptionId}`)
  t.match(compared.body, /<span class="diff">\s*&quot;amount&quot;: 1,?<\/span>/, 'the exception page marks the differing line')
  const resolved = await browser.request('POST', `/console/exceptions/${exceptionId}/resolve`, { _csrf: browser.csrf(page.body), action: 'close', note: 'the second delivery was a test' })
  t.equal(resolved.statusCode, 303)
  const { rows: [exception] } = await app.pg.query('SELECT status, resolution, closed_by, note FROM ops.exceptions WHERE exception_id = $1', [exceptionId])
  t.same(exception, { status: 'resolved', resolution: 'close', closed_by: 'console:ana', note: 'the second delivery was a test' })
})

t.test('bulk retry: a count and a confirmation, then the runs queued again one after another', async t => {
  const { app } = await build(t, { ADMIN_TOKEN, BULK_RETRY_PER_SECOND: '2' })
  const deliver = async (event: Record<string, unknown>) => (await app.inject(stripeDelivery(event))).json().run_id as string
  const failedA = await deliver(stripeEvent({ type: 'invoice.paid' }))
  const failedB = await deliver(stripeEvent({ type: 'invoice.paid' }))
  const otherType = await deliver(stripeEvent({ type: 'charge.refunded' }))
  const done = await deliver(stripeEvent({ type: 'invoice.paid' }))
  await app.pg.query("UPDATE ops.runs SET status = 'failed', attempts = 8, completed_at = now(), last_error = 'destination answered 500' WHERE run_id = ANY($1::uuid[])", [[failedA, failedB, otherType]])
  await app.pg.query("UPDATE ops.runs SET status = 'completed', completed_at = now() WHERE run_id = $1", [done])
  const browser = client(app)
  await browser.signIn()

  const list = await browser.request('GET', '/console/runs?status=failed&event_type=invoice.paid')
  t.match(list.body, 'href="/console/retry?status=failed&amp;event_type=invoice.paid"', 'the runs page offers to retry what it lists')
  const confirm = await browser.request('GET', '/console/retry?status=failed&event_type=invoice.paid')
  t.match(confirm.body, '<strong>2</strong> failed runs match', 'the count before anything happens')
  t.match(confirm.body, 'Retry 2 runs')
  const { rows: untouched } = await app.pg.query("SELECT count(*)::int AS n FROM ops.runs WHERE status = 'failed'")
  t.equal(untouched[0].n, 3, 'nothing is retried by looking')

  t.equal((await browser.request('POST', '/console/retry', { status: 'failed', event_type: 'invoice.paid', expected: '2' })).statusCode, 403, 'no CSRF token: refused')
  const retried = await browser.request('POST', '/console/retry', { _csrf: browser.csrf(confirm.body), status: 'failed', event_type: 'invoice.paid', expected: '2', note: 'destination back up' })
  t.equal(retried.statusCode, 303)
  t.equal(retried.headers.location, '/console/runs?queued=2&over=1')
  const { rows } = await app.pg.query(`SELECT run_id, status, attempts, last_error, extract(epoch FROM next_attempt_at - (SELECT min(next_attempt_at) FROM ops.runs WHERE run_id = ANY($1::uuid[])))::float8 AS after
    FROM ops.runs WHERE run_id = ANY($1::uuid[]) ORDER BY received_at`, [[failedA, failedB]])
  t.same(rows.map(r => [r.run_id, r.status, r.attempts, r.last_error]), [[failedA, 'received', 0, null], [failedB, 'received', 0, null]], 'queued again, attempts afresh')
  t.same(rows.map(r => r.after), [0, 0.5], 'due one after another at BULK_RETRY_PER_SECOND (2/s)')
  const { rows: [other] } = await app.pg.query('SELECT status FROM ops.runs WHERE run_id = $1', [otherType])
  t.equal(other.status, 'failed', 'a run outside the filter is left alone')
  const { rows: events } = await app.pg.query("SELECT data FROM ops.run_events WHERE type = 'replay_requested' ORDER BY id")
  t.match(events.map(e => e.data), [{ by: 'console:ana', note: 'destination back up', bulk: true, status_before: 'failed' }, { bulk: true }], 'each run says who retried it and why')
})
