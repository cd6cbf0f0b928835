import { STATUS_CODES } from 'node:http'

/** A reason not to boot, said in one line an operator can act on (no stack trace). */
export class BootError extends Error {
  override name = 'BootError'
}

/** An error that carries the HTTP answer it should produce (formatted by plugins/errors.ts). */
export class HttpError extends Error {
  constructor (readonly statusCode: number, readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options)
  }
}

/** Nothing was committed; the sender must retry (503 + Retry-After). */
export class DatabaseUnavailableError extends HttpError {
  constructor (message: string, cause?: unknown) {
    super(503, 'database_unavailable', message, { cause })
  }
}

/** The gateway sheds load (event loop lag, heap, ingest queue full): nothing was taken; retry later. */
export class OverloadedError extends HttpError {
  constructor (cause: string) {
    super(503, 'overloaded', `the gateway is overloaded (${cause}), try again`)
  }
}

/** Seconds a sender is asked to wait when the database cannot commit. */
export const RETRY_AFTER_SECONDS = 5

/** 401 → unauthorized, 413 → payload_too_large: the `error` field of every error answer. */
export function errorName (statusCode: number): string {
  return (STATUS_CODES[statusCode] ?? 'error').toLowerCase().replace(/[^a-z]+/g, '_')
}
