import type { IncomingHttpHeaders } from 'node:http'
import { constantTimeEqual, headerValue, isBase64, rejected, verified, MAX_SIGNATURE_HEADER_LENGTH, type VerifyResult } from '../signatures.js'

/**
 * A shared key in a header instead of a signature (SePay, and no-code providers): `Apikey <key>`,
 * `Bearer <key>`, or HTTP Basic `user:password`. Keys are compared in constant time over hashes of
 * both sides, so neither a key nor its length leaks. The body is not signed: replay protection is
 * the idempotency key alone.
 */
export interface ApiKeyScheme {
  /** Lowercase header name; default `authorization`. */
  header?: string
  /** Accepted schemes before the key, matched case-insensitively (`Apikey `, `Bearer `); default none. */
  prefixes?: readonly string[]
  /** HTTP Basic: the header is `Basic base64(user:password)` and each secret is `user:password`. */
  basic?: boolean
}

export function apiKeyScheme (scheme: ApiKeyScheme) {
  const header = scheme.header ?? 'authorization'
  const prefixes = scheme.basic === true ? ['Basic '] : (scheme.prefixes ?? [])
  return {
    header,
    verify (headers: IncomingHttpHeaders, keys: readonly string[]): VerifyResult {
      const value = headerValue(headers[header])
      if (value === undefined || value === '') return rejected('missing_signature_header')
      if (value.length > MAX_SIGNATURE_HEADER_LENGTH) return rejected('malformed_signature_header')
      let presented = value
      if (prefixes.length > 0) {
        const prefix = prefixes.find(p => value.slice(0, p.length).toLowerCase() === p.toLowerCase())
        if (prefix === undefined || value.length === prefix.length) return rejected('malformed_signature_header')
        presented = value.slice(prefix.length)
      }
      if (scheme.basic === true) {
        if (!isBase64(presented)) return rejected('malformed_signature_header')
        presented = Buffer.from(presented, 'base64').toString('utf8')
      }
      let match = false
      for (const key of keys) {
        if (constantTimeEqual(presented, key)) match = true
      }
      return match ? verified : rejected('no_matching_signature')
    },
    sign (key: string): Record<string, string> {
      return { [header]: scheme.basic === true ? `Basic ${Buffer.from(key).toString('base64')}` : `${prefixes[0] ?? ''}${key}` }
    }
  }
}
