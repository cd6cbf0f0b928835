import type { FastifyBaseLogger } from 'fastify'

/**
 * How processing a run ends. A handler returns one (or nothing, which means done); a destination's
 * answer becomes one; the worker turns it into the run's next status.
 */
export type Outcome =
  | { outcome: 'done' }
  | { outcome: 'ignore', reason?: string }
  | { outcome: 'retry', reason: string, afterMs?: number }
  | { outcome: 'failed', reason: string }
  | { outcome: 'exception', reason: string, details?: Record<string, unknown> }

export const done = (): Outcome => ({ outcome: 'done' })
export const ignore = (reason?: string): Outcome => ({ outcome: 'ignore', reason })
/** Try again later (exponential backoff with jitter, or `afterMs`), until WORKER_MAX_ATTEMPTS. */
export const retryLater = (reason: string, afterMs?: number): Outcome => ({ outcome: 'retry', reason, afterMs })
export const failed = (reason: string): Outcome => ({ outcome: 'failed', reason })
/** A human must look: a conflict with the system of record, an amount that does not match... */
export const raiseException = (reason: string, details?: Record<string, unknown>): Outcome => ({ outcome: 'exception', reason, details })

export interface HandlerContext {
  runId: string
  provider: string
  eventType: string | null
  /** 1 on the first attempt. */
  attempt: number
  log: FastifyBaseLogger
}

/**
 * A provider's code for one event type (or `*`). It must not write to the system of record: it
 * decides, and a conflict becomes an exception for human review.
 */
export type Handler<Event = any> = (event: Event, context: HandlerContext) => Outcome | undefined | Promise<Outcome | undefined>

const SEVERITY: Record<Outcome['outcome'], number> = { done: 0, ignore: 0, retry: 1, failed: 2, exception: 3 }

/** Of several destinations' outcomes, the one that matters most: exception > failed > retry > done. */
export function worstOf (outcomes: readonly Outcome[]): Outcome {
  return outcomes.reduce<Outcome>((worst, next) => SEVERITY[next.outcome] > SEVERITY[worst.outcome] ? next : worst, done())
}
