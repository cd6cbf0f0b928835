import type { FastifyBaseLogger } from 'fastify'
import type { Destination } from './destinations.js'
import { done, worstOf, type Handler, type Outcome } from './outcomes.js'
import { backoffMs, type ClaimedRun, type Finish } from './queue.js'

/**
 * What processing one run does, and what its outcome makes of the run: the worker's two decisions,
 * apart from its claims, leases and statements (plugins/worker.ts).
 */

/**
 * The provider's handler for the event type (or its `*` handler), if any; a handler's outcome other
 * than done is final. Then every destination whose pattern matches, in parallel: the worst of their
 * outcomes. No handler and no destination: done.
 */
export async function dispatch (
  claimed: ClaimedRun,
  handlers: Readonly<Record<string, Handler>> | undefined,
  destinations: readonly Destination[],
  log: FastifyBaseLogger
): Promise<Outcome> {
  const handler = handlers?.[claimed.event_type ?? ''] ?? handlers?.['*']
  if (handler !== undefined) {
    let runLog: FastifyBaseLogger | undefined
    const outcome = await handler(claimed.payload, {
      runId: claimed.run_id,
      provider: claimed.provider,
      eventType: claimed.event_type,
      attempt: claimed.attempts,
      // Made when the handler first logs: most runs' handlers never do (a child logger per run was a
      // tenth of the worker's allocations).
      get log () { return (runLog ??= log.child({ run_id: claimed.run_id })) }
    }) ?? done()
    if (outcome.outcome !== 'done') return outcome
  }
  const targets = destinations.filter(destination => destination.matches(claimed.provider, claimed.event_type))
  return worstOf(await Promise.all(targets.map(async destination => await destination.forward(claimed))))
}

export interface RetryPolicy {
  maxAttempts: number
  retryBaseMs: number
  retryMaxMs: number
}

/**
 * The run's next status for an outcome: its run event's data (attempt, duration, worker), the error
 * kept as `last_error`, the exception raised for review. A retry past the last attempt fails; a retry
 * waits the handler's `afterMs`, else the backoff (half to all of base·2^(attempt−1), capped).
 */
export function toFinish (claimed: Pick<ClaimedRun, 'attempts'>, outcome: Outcome, ms: number, worker: string, policy: RetryPolicy, random = Math.random): Finish {
  const data = { attempt: claimed.attempts, ms, worker }
  switch (outcome.outcome) {
    case 'done': return { status: 'completed', data }
    case 'ignore': return { status: 'ignored', data: { ...data, reason: outcome.reason } }
    case 'failed': return { status: 'failed', error: outcome.reason, data: { ...data, error: outcome.reason } }
    case 'exception': return {
      status: 'exception',
      error: outcome.reason,
      data: { ...data, reason: outcome.reason },
      exception: { reason: outcome.reason, details: outcome.details ?? {} }
    }
    case 'retry': {
      if (claimed.attempts >= policy.maxAttempts) return { status: 'failed', error: outcome.reason, data: { ...data, error: outcome.reason, gave_up: true } }
      const retryInMs = outcome.afterMs ?? backoffMs(claimed.attempts, policy.retryBaseMs, policy.retryMaxMs, random)
      return { status: 'retrying', retryInMs, error: outcome.reason, data: { ...data, error: outcome.reason, retry_in_ms: retryInMs } }
    }
  }
}
