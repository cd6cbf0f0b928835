import tap from 'tap'
import { createBatcher } from '../src/batcher.js'
import { batchParam } from '../src/plugins/ingest.js'
import { build, stripeDelivery, stripeEvent, withClient } from './helper.js'

// Group commit (src/batcher.ts + the batch statement of src/plugins/ingest.ts): deliveries that
// arrive together share one statement, and each still gets its own answer.

function deferred<T> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

tap.test('a batch as one jsonb parameter: the version byte, then the rows as one JSON array', async t => {
  const rows = [
    // A header kept as Node reads it (latin1 'Ã©' for the UTF-8 of 'é'), multi-byte text around the payload.
    { key: 'stripe\nevt_1', bodyHash: 'ab', head: '["stripe","evt_1","x",', payload: Buffer.from('{"content":"Chuyển khoản 🎉"}'), tail: ',"ab",{"x-note":"cafÃ©"},null' },
    { key: 'stripe\nevt_2', bodyHash: 'cd', head: '["stripe","evt_2",null,', payload: Buffer.from('{}'), tail: ',"cd",{},"ç"' },
    { key: 'stripe\nevt_1', bodyHash: 'ef', head: '["stripe","evt_1","x",', payload: Buffer.from('{"b":2}'), tail: ',"ef",{},null' },
    { key: 'stripe\nevt_1', bodyHash: 'ef', head: '["stripe","evt_1","x",', payload: Buffer.from('{"b":2}'), tail: ',"ef",{},null' }
  ]
  const param = batchParam(rows)
  t.equal(param[0], 1, 'jsonb binary format, version 1')
  t.same(JSON.parse(param.subarray(1).toString()), [
    ['stripe', 'evt_1', 'x', { content: 'Chuyển khoản 🎉' }, 'ab', { 'x-note': 'cafÃ©' }, null, true, true],
    ['stripe', 'evt_2', null, {}, 'cd', {}, 'ç', true, true],
    ['stripe', 'evt_1', 'x', { b: 2 }, 'ef', {}, null, true, false],
    ['stripe', 'evt_1', 'x', { b: 2 }, 'ef', {}, null, false, false]
  ], 'each row ends with whether it is the first of its key and body in the batch, then of its key')
  const ends = [',true,true]', ',true,true]', ',true,false]', ',false,false]']
  t.equal(param.length, 1 + Buffer.byteLength(`[${rows.map((r, i) => r.head + r.payload.toString() + r.tail + ends[i]).join(',')}]`), 'sized exactly: no byte left unwritten')
  t.same(JSON.parse(batchParam([]).subarray(1).toString()), [], 'no rows: an empty array')
  t.same(JSON.parse(batchParam([rows[3]]).subarray(1).toString())[0].slice(7), [true, true], 'a batch of its own (a split batch): the first of its key and body')
})

tap.test('the batcher', async t => {
  t.test('a lone item leaves at once, alone', async t => {
    const batches: number[][] = []
    const batcher = createBatcher<number, number>({ maxSize: 10, concurrency: 2, run: async items => { batches.push(items); return items.map(i => i * 2) } })
    const started = performance.now()
    t.equal(await batcher.push(21), 42)
    t.ok(performance.now() - started < 50, 'not held back by a window')
    t.same(batches, [[21]])
    t.equal(batcher.pending, 0)
  })

  t.test('items arriving while the slots are busy leave together, at most maxSize per batch', async t => {
    const batches: number[][] = []
    const gates: Array<{ promise: Promise<void>, resolve: (v: void) => void }> = []
    const batcher = createBatcher<number, number>({
      maxSize: 3,
      concurrency: 1,
      run: async items => {
        batches.push(items)
        const gate = deferred<void>()
        gates.push(gate)
        await gate.promise
        return items
      }
    })
    const first = batcher.push(0)
    await new Promise(resolve => setImmediate(resolve))
    t.same(batches, [[0]], 'the first item went alone')
    const rest = [1, 2, 3, 4, 5, 6, 7].map(async i => await batcher.push(i))
    await new Promise(resolve => setImmediate(resolve))
    t.equal(batches.length, 1, 'nothing else leaves while the one slot is busy')
    t.equal(batcher.pending, 8)
    for (let i = 0; gates.length > i || i < 4; i++) {
      while (gates.length <= i) await new Promise(resolve => setImmediate(resolve))
      gates[i].resolve()
    }
    t.same(await Promise.all([first, ...rest]), [0, 1, 2, 3, 4, 5, 6, 7])
    t.same(batches, [[0], [1, 2, 3], [4, 5, 6], [7]])
  })

  t.test('lingerMs: items arriving within the window share one batch, even with free slots', async t => {
    const batches: Array<{ items: number[], after: number }> = []
    const started = performance.now()
    const batcher = createBatcher<number, number>({
      maxSize: 10,
      concurrency: 3,
      // A window far longer than a timer's lateness on a busy machine (test files run four at once).
      lingerMs: 200,
      run: async items => { batches.push({ items, after: performance.now() - started }); return items }
    })
    const first = batcher.push(1)
    await new Promise(resolve => setTimeout(resolve, 5))
    const later = [2, 3].map(async i => await batcher.push(i))
    t.same(await Promise.all([first, ...later]), [1, 2, 3])
    t.same(batches.map(b => b.items), [[1, 2, 3]], 'one statement, not spread over the free slots')
    t.ok(batches[0].after >= 199, `held for the window (${batches[0].after.toFixed(1)} ms)`)
    t.ok(batches[0].after < 1000, 'and not much longer')
  })

  t.test('lingerMs: a full batch does not wait; items that waited for a busy slot do not wait again', async t => {
    const batches: Array<{ items: number[], at: number }> = []
    const gate = deferred<void>()
    const batcher = createBatcher<number, number>({
      maxSize: 3,
      concurrency: 1,
      // Windows and margins far longer than a timer's lateness on a busy machine.
      lingerMs: 200,
      run: async items => { batches.push({ items, at: performance.now() }); if (batches.length === 1) await gate.promise; return items }
    })
    const started = performance.now()
    const full = [1, 2, 3].map(async i => await batcher.push(i))
    await new Promise(resolve => setImmediate(resolve))
    t.same(batches.map(b => b.items), [[1, 2, 3]], 'maxSize items left at once')
    t.ok(batches[0].at - started < 100, 'without the window')
    const queued = [4, 5].map(async i => await batcher.push(i))
    await new Promise(resolve => setTimeout(resolve, 250))
    const released = performance.now()
    gate.resolve()
    t.same(await Promise.all([...full, ...queued]), [1, 2, 3, 4, 5])
    t.same(batches.map(b => b.items), [[1, 2, 3], [4, 5]])
    t.ok(batches[1].at - released < 100, `older than the window already: sent as the slot freed (${(batches[1].at - released).toFixed(1)} ms)`)
  })

  t.test('an Error answers one item; a throw answers the whole batch', async t => {
    let calls = 0
    const batcher = createBatcher<number, string>({
      maxSize: 10,
      concurrency: 1,
      run: async items => {
        if (calls++ === 1) throw new Error('database down')
        return items.map(i => i === 2 ? new Error('bad item') : `ok ${i}`)
      }
    })
    // Pushed in one turn of the event loop: one batch.
    const results = await Promise.allSettled([1, 2, 3].map(async i => await batcher.push(i)))
    t.same(results.map(r => r.status === 'fulfilled' ? r.value : (r.reason as Error).message), ['ok 1', 'bad item', 'ok 3'])
    const again = await Promise.allSettled([4, 5].map(async i => await batcher.push(i)))
    t.same(again.map(r => r.status === 'fulfilled' ? r.value : (r.reason as Error).message), ['database down', 'database down'])
    t.equal(batcher.pending, 0)
  })
})

tap.test('one batch holding new events, duplicates, payload conflicts and unstorable payloads', async t => {
  // One statement in flight at a time: everything sent together after the first shares a batch.
  const { app, databaseUrl } = await build(t, { INGEST_BATCH_CONCURRENCY: '1', INGEST_BATCH_SIZE: '200' })
  const events = Array.from({ length: 20 }, () => stripeEvent())
  const sends: Array<{ kind: string, id: string, request: ReturnType<typeof stripeDelivery> }> = []
  for (const event of events) sends.push({ kind: 'new', id: event.id as string, request: stripeDelivery(event) })
  for (const event of events.slice(0, 10)) sends.push({ kind: 'duplicate', id: event.id as string, request: stripeDelivery(event) })
  for (const event of events.slice(10, 15)) sends.push({ kind: 'conflict', id: event.id as string, request: stripeDelivery({ ...event, type: 'changed.type' }) })
  // PostgreSQL refuses \u0000 in jsonb text.
  for (let i = 0; i < 3; i++) {
    const id = `evt_nul_${i}`
    sends.push({ kind: 'unstorable', id, request: stripeDelivery(`{"id":"${id}","type":"x","data":"a\\u0000b"}`) })
  }
  // A lone surrogate: valid for JSON.parse, refused by PostgreSQL (class 22).
  sends.push({ kind: 'unstorable', id: 'evt_surrogate', request: stripeDelivery('{"id":"evt_surrogate","type":"x","data":"\\ud800"}') })
  // Shuffled, so that every kind is spread through the batch (the first request goes alone).
  const [lead, ...others] = sends
  const responses = await Promise.all([lead, ...others.sort(() => Math.random() - 0.5)].map(async send => ({ send, response: await app.inject(send.request) })))

  const runIds = new Map<string, Set<string>>()
  const statuses = new Map<string, string[]>()
  for (const { send, response } of responses) {
    const body = response.json()
    if (send.kind === 'unstorable') {
      t.equal(response.statusCode, 400, `${send.id}: 400`)
      t.same(body, { error: 'bad_request', reason: 'unstorable_payload' })
      continue
    }
    t.equal(response.statusCode, 200, `${send.kind} ${send.id}: 200`)
    if (!runIds.has(send.id)) runIds.set(send.id, new Set())
    runIds.get(send.id)?.add(body.run_id as string)
    statuses.set(send.id, [...(statuses.get(send.id) ?? []), body.status as string])
  }
  for (const event of events) {
    const id = event.id as string
    t.equal(runIds.get(id)?.size, 1, `${id}: every delivery answered with the same run`)
    const seen = (statuses.get(id) ?? []).sort()
    const index = events.indexOf(event)
    const expected = index < 10 ? ['accepted', 'duplicate'] : index < 15 ? ['accepted', 'conflict'] : ['accepted']
    // Which of two copies in one batch is "first" is the batch's order; exactly one is accepted.
    t.equal(seen.filter(s => s === 'accepted').length, 1, `${id}: accepted once`)
    t.equal(seen.length, expected.length)
  }

  await withClient(databaseUrl, async client => {
    const { rows: [counts] } = await client.query(`SELECT
      (SELECT count(*)::int FROM ops.runs) AS runs,
      (SELECT count(*)::int FROM ops.run_events WHERE type = 'received') AS received,
      (SELECT count(*)::int FROM ops.run_events WHERE type = 'duplicate') AS duplicates,
      (SELECT count(*)::int FROM ops.run_events WHERE type = 'payload_conflict') AS conflicts,
      (SELECT count(*)::int FROM ops.exceptions WHERE reason = 'payload_conflict') AS exceptions`)
    t.same(counts, { runs: 20, received: 20, duplicates: 10, conflicts: 5, exceptions: 5 })
    const { rows: wrongFirst } = await client.query(`
      SELECT run_id FROM ops.run_events e WHERE run_id IS NOT NULL
      GROUP BY run_id HAVING (array_agg(type ORDER BY id))[1] <> 'received'`)
    t.same(wrongFirst, [], "each run's history starts with its received event")
  })
})

tap.test('a batch split by an unstorable payload keeps every answer in its place', async t => {
  // The batch fails as a whole and each delivery is stored alone, at once: two copies of one key
  // then race, and the loser (no row, looked up again) must not shift the answers after it.
  const { app } = await build(t, { INGEST_BATCH_CONCURRENCY: '1' })
  // Open connections ready, so that the deliveries stored alone really run at the same time.
  await Promise.all(Array.from({ length: 8 }, async () => await app.pg.ingest.query('SELECT pg_sleep(0.05)')))
  for (let round = 0; round < 10; round++) {
    const event = stripeEvent()
    const other = stripeEvent()
    const sends = [
      { expect: 'accepted', request: stripeDelivery(stripeEvent()) },
      { expect: 400, request: stripeDelivery(`{"id":"evt_nul_${round}","type":"x","data":"\\u0000"}`) },
      { expect: event.id, request: stripeDelivery(event) },
      { expect: event.id, request: stripeDelivery({ ...event, type: 'changed.type' }) },
      { expect: 'accepted', request: stripeDelivery(other) },
      { expect: 400, request: stripeDelivery(`{"id":"evt_nul_${round}b","type":"x","data":"\\u0000"}`) }
    ]
    const responses = await Promise.all(sends.map(async send => await app.inject(send.request)))
    const [, nul, copy, conflict, last, nul2] = responses
    t.equal(nul.statusCode, 400)
    t.equal(nul2.statusCode, 400)
    t.equal(copy.json().run_id, conflict.json().run_id, 'both copies answered with one run')
    t.same([copy.json().status, conflict.json().status].sort(), ['accepted', 'conflict'])
    t.equal(last.json().status, 'accepted')
    t.not(last.json().run_id, copy.json().run_id)
  }
})

tap.test('INGEST_BATCH_LINGER_MS: deliveries a few ms apart share one statement, each with its own answer', async t => {
  const { app, databaseUrl } = await build(t, { INGEST_BATCH_LINGER_MS: '40' })
  const first = app.inject(stripeDelivery(stripeEvent()))
  await new Promise(resolve => setTimeout(resolve, 5))
  const second = app.inject(stripeDelivery(stripeEvent()))
  const answers = (await Promise.all([first, second])).map(response => response.json())
  t.same(answers.map(answer => answer.status), ['accepted', 'accepted'])
  t.not(answers[0].run_id, answers[1].run_id)
  // Rows written by one statement share its transaction id.
  const transactions = await withClient(databaseUrl, async client =>
    (await client.query('SELECT count(DISTINCT xmin::text)::int AS n FROM ops.runs WHERE run_id = ANY($1::uuid[])', [answers.map(answer => answer.run_id)])).rows[0].n)
  t.equal(transactions, 1, 'one commit for both')
})
