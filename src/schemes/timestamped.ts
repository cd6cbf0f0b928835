import type { IncomingHttpHeaders } from 'node:http'
import {
  type VerifyResult, checkTimestamp, decodeDigest, headerValue, hmac, matchesAny, rejected, verified, MAX_SIGNATURE_HEADER_LENGTH
} from '../signatures.js'
import type { VerifyContext } from '../provider.js'

/**
 * One header carrying a timestamp and one or more HMAC-SHA256 hex signatures, any of which may
 * match (one per active secret while a secret is rolled):
 *   Stripe  `t=<ts>,v1=<hex>,v1=<hex>`  over `${ts}.${body}`
 *   Paddle  `ts=<ts>;h1=<hex>;h1=<hex>` over `${ts}:${body}`
 * The timestamp is checked before any HMAC is computed.
 */
export interface TimestampedHeader {
  itemSeparator: string
  timestampKey: string
  signatureKey: string
  /** Between the timestamp and the body in the signed content. */
  contentSeparator: string
  /** A signature that cannot be decoded matches nothing (Stripe's library) instead of refusing the header. */
  skipUndecodable?: boolean
}

export function verifyTimestampedHeader (
  format: TimestampedHeader, raw: Buffer, header: string | undefined, secrets: readonly string[], now: number, toleranceSeconds: number
): VerifyResult {
  if (header === undefined || header === '') return rejected('missing_signature_header')
  if (header.length > MAX_SIGNATURE_HEADER_LENGTH) return rejected('malformed_signature_header')

  let timestamp: string | undefined
  const signatures: Buffer[] = []
  let otherSchemes = 0
  let signed = 0
  for (const item of header.split(format.itemSeparator)) {
    const eq = item.indexOf('=')
    if (eq <= 0) return rejected('malformed_signature_header')
    const key = item.slice(0, eq).trim()
    const value = item.slice(eq + 1).trim()
    if (key === format.timestampKey) {
      if (timestamp !== undefined) return rejected('malformed_signature_header')
      timestamp = value
    } else if (key === format.signatureKey) {
      const signature = decodeDigest(value, 'hex', 32)
      if (signature !== undefined) signatures.push(signature)
      else if (format.skipUndecodable !== true) return rejected('malformed_signature_header')
      signed++
    } else {
      otherSchemes++
    }
  }
  if (signed === 0) return rejected(otherSchemes > 0 ? 'unknown_key_version' : 'malformed_signature_header')
  const fresh = checkTimestamp(timestamp, now, toleranceSeconds)
  if (!fresh.ok) return fresh

  let match = false
  for (const secret of secrets) {
    if (matchesAny(hmac('sha256', secret, `${timestamp}${format.contentSeparator}`, raw), signatures)) match = true
  }
  return match ? verified : rejected('no_matching_signature')
}

export function signTimestampedHeader (format: TimestampedHeader, raw: Buffer, secret: string, now: number): string {
  const signature = hmac('sha256', secret, `${now}${format.contentSeparator}`, raw).toString('hex')
  return `${format.timestampKey}=${now}${format.itemSeparator}${format.signatureKey}=${signature}`
}

/**
 * One provider's scheme, in the shape a provider takes it (ProviderDefinition): the header that
 * carries it, its verify and its signer, with no adapter in between.
 */
export function timestampedScheme (format: TimestampedHeader, header: string) {
  return {
    signatureHeaders: [header],
    verify: (raw: Buffer, headers: IncomingHttpHeaders, secrets: readonly string[], now: number, { toleranceSeconds }: Pick<VerifyContext, 'toleranceSeconds'>): VerifyResult =>
      verifyTimestampedHeader(format, raw, headerValue(headers[header]), secrets, now, toleranceSeconds),
    sign: (raw: Buffer, secret: string, now: number): Record<string, string> => ({ [header]: signTimestampedHeader(format, raw, secret, now) })
  }
}
