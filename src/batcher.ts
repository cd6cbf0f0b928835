/**
 * Group commit. Items pushed while fewer than `concurrency` batches are in flight leave at once
 * (after the current I/O phase, so a burst read in one turn of the event loop goes together,
 * spread over the free slots); items pushed while the database is busy wait for the next free slot
 * and leave together, up to `maxSize` per batch. With no linger a lone request is never held back;
 * under load, batches grow by themselves to whatever arrived during one commit.
 *
 * `lingerMs` trades a little latency for fewer statements at moderate rates: a free slot waits
 * until the oldest waiting item is that old (or `maxSize` items wait) and then takes everything
 * waiting as one batch. Under load the items have waited longer than that already: no delay.
 *
 * `run` answers each item of a batch in order: a value, or an Error for that item alone. If `run`
 * throws, every item of the batch gets that error.
 */
export interface Batcher<I, R> {
  push: (item: I) => Promise<R>
  /** Items waiting plus items in flight (for metrics and tests). */
  readonly pending: number
}

export interface BatcherOptions<I, R> {
  maxSize: number
  concurrency: number
  /** How long the oldest waiting item may be held for company when a slot is free (0: not at all). */
  lingerMs?: number
  run: (items: I[]) => Promise<Array<R | Error>>
}

interface Waiting<I, R> { item: I, at: number, resolve: (value: R) => void, reject: (err: Error) => void }

export function createBatcher<I, R> ({ maxSize, concurrency, run, lingerMs = 0 }: BatcherOptions<I, R>): Batcher<I, R> {
  const queue: Array<Waiting<I, R>> = []
  let inFlight = 0
  let inFlightItems = 0
  let scheduled = false
  let lingering: NodeJS.Timeout | undefined

  function schedule (): void {
    if (scheduled || queue.length === 0 || inFlight >= concurrency) return
    const wait = lingerMs - (performance.now() - queue[0].at)
    if (wait > 0 && queue.length < maxSize) {
      lingering ??= setTimeout(() => { lingering = undefined; schedule() }, wait)
      return
    }
    if (lingering !== undefined) {
      clearTimeout(lingering)
      lingering = undefined
    }
    scheduled = true
    setImmediate(flush)
  }

  function flush (): void {
    scheduled = false
    while (queue.length > 0 && inFlight < concurrency) {
      // A burst is spread over the free slots (smaller statements committing side by side), unless
      // the items lingered to go together.
      const share = lingerMs > 0 ? queue.length : Math.ceil(queue.length / (concurrency - inFlight))
      const batch = queue.splice(0, Math.min(maxSize, share))
      inFlight++
      inFlightItems += batch.length
      // send() settles every item itself and never rejects.
      send(batch).catch(() => {})
    }
  }

  async function send (batch: Array<Waiting<I, R>>): Promise<void> {
    try {
      const results = await run(batch.map(waiting => waiting.item))
      batch.forEach((waiting, index) => {
        const result = results[index]
        if (result instanceof Error) waiting.reject(result)
        else waiting.resolve(result as R)
      })
    } catch (err) {
      for (const waiting of batch) waiting.reject(err as Error)
    } finally {
      inFlight--
      inFlightItems -= batch.length
      schedule()
    }
  }

  return {
    push (item: I): Promise<R> {
      return new Promise<R>((resolve, reject) => {
        queue.push({ item, at: performance.now(), resolve, reject })
        schedule()
      })
    },
    get pending () { return queue.length + inFlightItems }
  }
}
