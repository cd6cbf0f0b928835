import { clientKey } from './plugins/protection.js'

/**
 * Refusals of clients past their limit, counted in memory and written as one audit row per client
 * (IPv6 by /64), provider, reason and minute, with a count: a flood of any size costs a few rows a
 * minute instead of one each. A minute is written once it has passed (and whatever is left at close).
 */
export interface AggregateRow { minute: string, client: string, provider: string, reason: string, count: number }

/** Distinct (client, provider, reason) of one minute kept apart; past it they are counted under client `*`. */
const MAX_KEYS = 10_000

export function refusalAggregate (write: (rows: AggregateRow[]) => Promise<void>, onError: (err: Error) => void, flushMs = 10_000) {
  const rows = new Map<string, AggregateRow>()
  const flush = async (all: boolean): Promise<void> => {
    const current = minuteOf(Date.now())
    const due: AggregateRow[] = []
    for (const [key, row] of rows) {
      if (all || row.minute !== current) {
        due.push(row)
        rows.delete(key)
      }
    }
    if (due.length > 0) await write(due).catch(onError)
  }
  const timer = setInterval(() => { flush(false).catch(onError) }, flushMs)
  timer.unref()
  return {
    count (provider: string, reason: string, ip: string): void {
      const minute = minuteOf(Date.now())
      let client = clientKey(ip)
      let key = `${minute}|${client}|${provider}|${reason}`
      if (!rows.has(key) && rows.size >= MAX_KEYS) {
        client = '*'
        key = `${minute}|*|${provider}|${reason}`
      }
      const row = rows.get(key)
      if (row !== undefined) row.count++
      else rows.set(key, { minute, client, provider, reason, count: 1 })
    },
    async stop (): Promise<void> {
      clearInterval(timer)
      await flush(true)
    }
  }
}

function minuteOf (ms: number): string {
  return new Date(Math.floor(ms / 60_000) * 60_000).toISOString()
}
