import t from 'tap'
import pino from 'pino'
import { dispatch, toFinish } from '../src/processing.js'
import { done, failed, ignore, raiseException, retryLater, type Handler, type Outcome } from '../src/outcomes.js'
import type { Destination } from '../src/destinations.js'

// The worker's two decisions on their own: what processing a run does (dispatch) and what its
// outcome makes of the run (toFinish). No database, no timers.

const log = pino({ enabled: false })
const run = { run_id: 'r1', provider: 'stripe', event_type: 'invoice.paid', payload: { id: 'evt_1' }, attempts: 1, lease_expired: false }
const policy = { maxAttempts: 3, retryBaseMs: 1000, retryMaxMs: 60_000 }

function destination (name: string, outcome: Outcome, calls: string[], events = ['*']): Destination {
  return {
    name,
    matches: (_provider, eventType) => events.includes('*') || events.includes(eventType ?? ''),
    forward: async () => { calls.push(name); return outcome },
    close: async () => {}
  }
}

t.test('dispatch: the handler for the type, else `*`; a handler that does not say done is final', async t => {
  const calls: string[] = []
  const seen: unknown[] = []
  const handlers: Record<string, Handler> = {
    'invoice.paid': (event, context) => { seen.push([event, context.attempt, context.runId]); return ignore('test mode') },
    '*': () => failed('not this one')
  }
  t.same(await dispatch(run, handlers, [destination('billing', done(), calls)], log), ignore('test mode'))
  t.same(seen, [[{ id: 'evt_1' }, 1, 'r1']], 'the handler gets the payload and the attempt')
  t.same(calls, [], 'no destination after a handler that ignored the run')
  t.same(await dispatch({ ...run, event_type: 'charge.refunded' }, handlers, [], log), failed('not this one'), '`*` for other types')
  t.same(await dispatch({ ...run, event_type: null }, { '*': () => undefined }, [], log), done(), 'a handler that returns nothing: done')
})

t.test("dispatch: a handler's log lines carry the run id; the same logger each time", async t => {
  const lines: Array<Record<string, unknown>> = []
  const capture = pino({}, { write (line: string) { lines.push(JSON.parse(line)) } })
  await dispatch(run, {
    '*': (_payload, context) => {
      const { runId, provider, eventType, attempt } = context
      t.same({ runId, provider, eventType, attempt }, { runId: run.run_id, provider: run.provider, eventType: run.event_type, attempt: run.attempts })
      context.log.info('first')
      t.equal(context.log, context.log, 'one child logger per run')
      context.log.warn({ step: 2 }, 'second')
      return done()
    }
  }, [], capture)
  t.same(lines.map(line => [line.msg, line.run_id]), [['first', run.run_id], ['second', run.run_id]])
})

t.test('dispatch: after a handler that says done, every matching destination; the worst outcome wins', async t => {
  const calls: string[] = []
  const destinations = [
    destination('a', done(), calls),
    destination('b', retryLater('b is down'), calls),
    destination('c', raiseException('conflict', { amount: 1 }), calls, ['invoice.paid']),
    destination('d', failed('never called'), calls, ['charge.refunded'])
  ]
  t.same(await dispatch(run, { '*': () => done() }, destinations, log), raiseException('conflict', { amount: 1 }))
  t.same(calls.sort(), ['a', 'b', 'c'], 'only the destinations whose patterns match')
  t.same(await dispatch(run, undefined, [], log), done(), 'no handler, no destination: done')
  t.same(await dispatch(run, undefined, destinations.slice(0, 2), log), retryLater('b is down'), 'retry outranks done')
})

t.test('toFinish: each outcome becomes a status, its event data, its error and its exception', async t => {
  const at = (outcome: Outcome, attempts = 1) => toFinish({ attempts }, outcome, 12, 'w1', policy, () => 0.5)
  t.same(at(done()), { status: 'completed', data: { attempt: 1, ms: 12, worker: 'w1' } })
  t.same(at(ignore('test mode')), { status: 'ignored', data: { attempt: 1, ms: 12, worker: 'w1', reason: 'test mode' } })
  t.same(at(failed('bad currency')), { status: 'failed', error: 'bad currency', data: { attempt: 1, ms: 12, worker: 'w1', error: 'bad currency' } })
  t.same(at(raiseException('amount_mismatch', { order: 7 })), {
    status: 'exception', error: 'amount_mismatch', data: { attempt: 1, ms: 12, worker: 'w1', reason: 'amount_mismatch' }, exception: { reason: 'amount_mismatch', details: { order: 7 } }
  })
  t.same(at(raiseException('x')).exception, { reason: 'x', details: {} }, 'details default to {}')
})

t.test('toFinish: retries back off, honour afterMs, and fail after the last attempt', async t => {
  const retry = (attempts: number, outcome = retryLater('down'), random = 0.5) => toFinish({ attempts }, outcome, 1, 'w1', policy, () => random)
  // Equal jitter: between half and all of base·2^(attempt−1).
  t.equal(retry(1, retryLater('down'), 0).retryInMs, 500)
  t.equal(retry(1, retryLater('down'), 1).retryInMs, 1000)
  t.equal(retry(2, retryLater('down'), 1).retryInMs, 2000)
  t.match(retry(2), { status: 'retrying', error: 'down', data: { retry_in_ms: 1500, error: 'down' } })
  t.equal(retry(1, retryLater('later', 30_000)).retryInMs, 30_000, "the handler's afterMs")
  t.same(retry(3), { status: 'failed', error: 'down', data: { attempt: 3, ms: 1, worker: 'w1', error: 'down', gave_up: true } }, 'WORKER_MAX_ATTEMPTS reached: failed')
  const capped = toFinish({ attempts: 2 }, retryLater('down'), 1, 'w1', { maxAttempts: 99, retryBaseMs: 1000, retryMaxMs: 1500 }, () => 1)
  t.equal(capped.retryInMs, 1500, 'capped at WORKER_RETRY_MAX_MS')
})
