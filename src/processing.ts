import type { FastifyBaseLogger } from 'fastify'
import type { Destination } from './destinations.js'
import { done, worstOf, type Handler, type HandlerContext, type Outcome } from './outcomes.js'
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
    const outcome = await handler(claimed.payload, new RunContext(claimed, log)) ?? done()
    if (outcome.outcome !== 'done') return outcome
  }
  const targets = destinations.filter(destination => destination.matches(claimed.provider, claimed.event_type))
  return worstOf(await Promise.all(targets.map(async destination => await destination.forward(claimed))))
}

/**
 * What a handler is told about its run. Its logger (the worker's, with the run id) is made when the
 * handler first logs: most handlers never do, and a child logger per run was a tenth of the worker's
 * allocations. A class: the getter lives on its prototype, not in an object made per run.
 */
class RunContext implements HandlerContext {
  readonly runId: string
  readonly provider: string
  readonly eventType: string | null
  readonly attempt: number
  #log: FastifyBaseLogger | undefined
  readonly #parent: FastifyBaseLogger

  constructor (claimed: ClaimedRun, parent: FastifyBaseLogger) {
    this.runId = claimed.run_id
    this.provider = claimed.provider
    this.eventType = claimed.event_type
    this.attempt = claimed.attempts
    this.#parent = parent
  }

  get log (): FastifyBaseLogger {
    return (this.#log ??= this.#parent.child({ run_id: this.runId }))
  }
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
