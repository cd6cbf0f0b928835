import { createHash, createHmac, timingSafeEqual } from 'node:crypto'

/**
 * Building blocks shared by the providers' verifiers. Every verifier is a pure function
 * (raw bytes + headers + secrets + clock → VerifyResult) built from these.
 */

/** Why a delivery was refused. Returned to the sender, logged and audited; never a secret. */
export type RejectReason =
  | 'missing_signature_header'
  | 'malformed_signature_header'
  | 'missing_timestamp'
  | 'timestamp_too_old'
  | 'timestamp_in_future'
  | 'no_matching_signature'
  | 'unknown_key_version'
  | 'too_many_fields'

export type VerifyResult = { ok: true } | { ok: false, reason: RejectReason }

export const verified: VerifyResult = Object.freeze({ ok: true })
export function rejected (reason: RejectReason): VerifyResult {
  return { ok: false, reason }
}

/** Longest signature header we look at; longer ones are refused before any parsing. */
export const MAX_SIGNATURE_HEADER_LENGTH = 8192

/**
 * One value of a header, or undefined when absent. A header sent several times reaches Node as
 * an array (or, for unknown names, joined with ", "): that is left to the parser to refuse.
 */
export function headerValue (value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined
  return Array.isArray(value) ? value.join(', ') : value
}

export function hmac (algorithm: 'sha1' | 'sha256' | 'sha512', key: string | Buffer, ...parts: Array<string | Buffer>): Buffer {
  const mac = createHmac(algorithm, key)
  for (const part of parts) mac.update(part)
  return mac.digest()
}

export function sha256 (data: string | Buffer): Buffer {
  return createHash('sha256').update(data).digest()
}

/**
 * Constant-time equality of two byte strings of any length. Both sides are hashed first, so the
 * comparison never returns early on a length mismatch (which would leak the secret's length).
 */
export function constantTimeEqual (a: string | Buffer, b: string | Buffer): boolean {
  return timingSafeEqual(sha256(a), sha256(b))
}

/** `expected` matches at least one candidate; every comparison is constant-time on equal-length digests. */
export function matchesAny (expected: Buffer, candidates: readonly Buffer[]): boolean {
  let match = false
  for (const candidate of candidates) {
    if (candidate.length === expected.length && timingSafeEqual(candidate, expected)) match = true
  }
  return match
}

const HEX = /^[0-9a-fA-F]+$/
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

export function isBase64 (value: string): boolean {
  return BASE64.test(value)
}

/**
 * Decodes a hex or (canonical, padded) base64 digest of exactly `bytes` bytes, or undefined: odd
 * length, truncated, wrong alphabet. Buffer.from alone would silently stop at the first bad character.
 */
export function decodeDigest (value: string, encoding: 'hex' | 'base64', bytes: number): Buffer | undefined {
  if (encoding === 'hex') return value.length === bytes * 2 && HEX.test(value) ? Buffer.from(value, 'hex') : undefined
  if (!BASE64.test(value)) return undefined
  const decoded = Buffer.from(value, 'base64')
  return decoded.length === bytes && decoded.toString('base64') === value ? decoded : undefined
}

/**
 * Checks a signed unix timestamp (seconds) against the clock. Providers differ on the future side;
 * hookgate refuses both directions beyond the tolerance: a far-future signature is a pre-signed replay.
 */
export function checkTimestamp (value: string | undefined, now: number, toleranceSeconds: number): VerifyResult {
  if (value === undefined || value === '') return rejected('missing_timestamp')
  if (!/^\d{1,12}$/.test(value)) return rejected('malformed_signature_header')
  const age = now - Number(value)
  if (age > toleranceSeconds) return rejected('timestamp_too_old')
  if (-age > toleranceSeconds) return rejected('timestamp_in_future')
  return verified
}
