import t from 'tap'
import { build, stripeDelivery, stripeEvent } from './helper.js'

// Issue 14: a run with nothing to do is completed by the statement that stores it.

t.test('no handler and no destination: completed at ingest, in the same commit as the 2xx', async t => {
  const destinations = JSON.stringify([{ name: 'billing', url: 'http://127.0.0.1:1/hook', secretEnv: 'BILLING_SECRET', events: ['invoice.*'] }])
  const { app } = await build(t, { ROLE: 'all', WORKER_POLL_MS: '60000', DESTINATIONS: destinations, BILLING_SECRET: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' })
  const run = async (runId: string) => (await app.pg.query('SELECT status, attempts, completed_at IS NOT NULL AS done FROM ops.runs WHERE run_id = $1', [runId])).rows[0]
  const history = async (runId: string) => (await app.pg.query('SELECT type, data FROM ops.run_events WHERE run_id = $1 ORDER BY id', [runId])).rows

  const event = stripeEvent({ type: 'payment_intent.succeeded' })
  const answer = await app.inject(stripeDelivery(event))
  t.equal(answer.json().status, 'accepted')
  t.same(await run(answer.json().run_id), { status: 'completed', attempts: 0, done: true }, 'completed when the 2xx is sent, no worker involved')
  t.same((await history(answer.json().run_id)).map(e => [e.type, e.data.nothing_to_do]), [['received', undefined], ['completed', true]])
  t.same((await app.inject(stripeDelivery(event))).json(), { status: 'duplicate', run_id: answer.json().run_id }, 'a redelivery is still a duplicate')

  // A destination matches: the worker has something to do.
  const invoice = await app.inject(stripeDelivery(stripeEvent({ type: 'invoice.paid' })))
  t.match(await run(invoice.json().run_id), { status: /^(received|processing|retrying)$/ }, 'left to the worker')
})

t.test('an ingest-only replica cannot know the workers\' destinations: it leaves every run to them', async t => {
  const { app } = await build(t, { ROLE: 'ingest' })
  const answer = await app.inject(stripeDelivery(stripeEvent()))
  const { rows: [run] } = await app.pg.query('SELECT status FROM ops.runs WHERE run_id = $1', [answer.json().run_id])
  t.equal(run.status, 'received')
})
