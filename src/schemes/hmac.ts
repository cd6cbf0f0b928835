import type { IncomingHttpHeaders } from 'node:http'
import {
  type VerifyResult, checkTimestamp, decodeDigest, headerValue, hmac, matchesAny, rejected, verified, MAX_SIGNATURE_HEADER_LENGTH
} from '../signatures.js'
import type { VerifyContext } from '../provider.js'

/**
 * A signature in one header: HMAC (sha1/sha256/sha512) of a signed-content template, hex or base64,
 * with an optional prefix (`sha256=`, `v0=`). GitHub, Shopify, Slack and Linear are this scheme, and
 * so is every no-code provider of PROVIDERS_CONFIG.
 */
export interface HmacScheme {
  algorithm: 'sha1' | 'sha256' | 'sha512'
  /** Lowercase header name: `x-hub-signature-256`. */
  header: string
  /** Text before the signature in the header: `sha256=`. */
  prefix?: string
  encoding: 'hex' | 'base64'
  /** What is signed: `{body}` (default), `{timestamp}.{body}`, `{id}.{timestamp}.{body}`, `v0:{timestamp}:{body}`... */
  signedContent?: string
  /** Header carrying the signed unix timestamp (seconds), checked against the tolerance. */
  timestampHeader?: string
  /** Header carrying the id used by `{id}`. */
  idHeader?: string
}

const DIGEST_BYTES = { sha1: 20, sha256: 32, sha512: 64 } as const

type Part = string | { field: 'body' | 'timestamp' | 'id' }

/** `v0:{timestamp}:{body}` → ['v0:', {timestamp}, ':', {body}]; unknown placeholders or no `{body}` throw. */
export function compileSignedContent (template: string): Part[] {
  const parts: Part[] = []
  let body = 0
  for (const piece of template.split(/(\{[^}]*\})/)) {
    if (piece === '') continue
    const placeholder = /^\{(\w*)\}$/.exec(piece)
    if (placeholder === null) {
      parts.push(piece)
    } else if (placeholder[1] === 'body' || placeholder[1] === 'timestamp' || placeholder[1] === 'id') {
      if (placeholder[1] === 'body') body++
      parts.push({ field: placeholder[1] })
    } else {
      throw new Error(`unknown placeholder ${piece} in signed content "${template}" (use {body}, {timestamp}, {id})`)
    }
  }
  if (body !== 1) throw new Error(`signed content "${template}" must contain {body} exactly once`)
  // `{id}{timestamp}{body}`: where one field ends and the next begins would be the sender's choice
  // (id `a1`, timestamp `23` signs what id `a`, timestamp `123` signs).
  for (let i = 1; i < parts.length; i++) {
    if (typeof parts[i] !== 'string' && typeof parts[i - 1] !== 'string') throw new Error(`signed content "${template}" needs a separator between its fields`)
  }
  return parts
}

/** Builds the verifier and signer of one scheme; the template is compiled once. */
export function hmacScheme (scheme: HmacScheme) {
  const parts = compileSignedContent(scheme.signedContent ?? '{body}')
  const uses = (field: 'timestamp' | 'id') => parts.some(part => typeof part !== 'string' && part.field === field)
  if (uses('timestamp') && scheme.timestampHeader === undefined) throw new Error('{timestamp} needs a timestampHeader')
  if (uses('id') && scheme.idHeader === undefined) throw new Error('{id} needs an idHeader')
  const prefix = scheme.prefix ?? ''
  const bytes = DIGEST_BYTES[scheme.algorithm]

  function digest (secret: string, raw: Buffer, timestamp: string, id: string): Buffer {
    return hmac(scheme.algorithm, secret, ...parts.map(part =>
      typeof part === 'string' ? part : part.field === 'body' ? raw : part.field === 'timestamp' ? timestamp : id))
  }

  return {
    /** Whether the header `{id}` reads is covered by the signature. */
    signsId: uses('id'),
    /** Whether the timestamp header is covered by the signature (`{timestamp}` in the signed content). */
    signsTimestamp: uses('timestamp'),
    /** The header that carries the signature: kept out of storage and logs. */
    signatureHeaders: [scheme.header],
    /** A provider's verify as it is (ProviderDefinition.verify): providers take it without an adapter. */
    verify (raw: Buffer, headers: IncomingHttpHeaders, secrets: readonly string[], now: number, { toleranceSeconds }: Pick<VerifyContext, 'toleranceSeconds'>): VerifyResult {
      const header = headerValue(headers[scheme.header])
      if (header === undefined || header === '') return rejected('missing_signature_header')
      if (header.length > MAX_SIGNATURE_HEADER_LENGTH || !header.startsWith(prefix)) return rejected('malformed_signature_header')
      const signature = decodeDigest(header.slice(prefix.length).trim(), scheme.encoding, bytes)
      if (signature === undefined) return rejected('malformed_signature_header')
      let timestamp = ''
      if (scheme.timestampHeader !== undefined) {
        timestamp = headerValue(headers[scheme.timestampHeader]) ?? ''
        const fresh = checkTimestamp(timestamp, now, toleranceSeconds)
        if (!fresh.ok) return fresh
      }
      let id = ''
      if (scheme.idHeader !== undefined) {
        id = headerValue(headers[scheme.idHeader]) ?? ''
        if (id === '') return rejected('malformed_signature_header')
      }
      let match = false
      for (const secret of secrets) {
        if (matchesAny(digest(secret, raw, timestamp, id), [signature])) match = true
      }
      return match ? verified : rejected('no_matching_signature')
    },

    /** The headers a sender of this scheme adds (for `npm run send` and the property tests). */
    sign (raw: Buffer, secret: string, now: number, id = `msg_${now}`): Record<string, string> {
      const headers: Record<string, string> = {}
      if (scheme.timestampHeader !== undefined) headers[scheme.timestampHeader] = String(now)
      if (scheme.idHeader !== undefined) headers[scheme.idHeader] = id
      headers[scheme.header] = prefix + digest(secret, raw, String(now), id).toString(scheme.encoding)
      return headers
    }
  }
}
