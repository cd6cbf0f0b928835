import { createPublicKey, randomBytes, verify as verifySignature, type KeyObject } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { defineProvider, type ProviderDefinition, type ProviderPlugin } from '../provider.js'
import {
  type VerifyResult, checkTimestamp, decodeDigest, headerValue, hmac, matchesAny, rejected, verified, MAX_SIGNATURE_HEADER_LENGTH
} from '../signatures.js'

/**
 * Standard Webhooks (Svix, and every sender built on it: Clerk, Resend, ...):
 * `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> v1a,<base64> ...` (or the same
 * as `svix-*`, one set used whole, never mixed). Signed: `${id}.${timestamp}.${rawBody}`.
 * `v1` is HMAC-SHA256 keyed with the base64 bytes after `whsec_`; `v1a` is Ed25519, verified with
 * `whpk_` public keys (the official JS library skips it). ±tolerance on the timestamp.
 */
export function verifyStandardWebhook (
  raw: Buffer, headers: IncomingHttpHeaders, secrets: readonly string[], now: number, toleranceSeconds: number
): VerifyResult {
  const set = headers['webhook-id'] === undefined && headers['svix-id'] !== undefined ? 'svix' : 'webhook'
  const signatureHeader = headerValue(headers[`${set}-signature`])
  if (signatureHeader === undefined || signatureHeader === '') return rejected('missing_signature_header')
  if (signatureHeader.length > MAX_SIGNATURE_HEADER_LENGTH) return rejected('malformed_signature_header')
  const id = headerValue(headers[`${set}-id`])
  if (id === undefined || id === '' || id.length > 256) return rejected('malformed_signature_header')
  const timestamp = headerValue(headers[`${set}-timestamp`])
  const fresh = checkTimestamp(timestamp, now, toleranceSeconds)
  if (!fresh.ok) return fresh

  const v1: Buffer[] = []
  const v1a: Buffer[] = []
  for (const entry of signatureHeader.split(' ')) {
    if (entry === '') continue
    const comma = entry.indexOf(',')
    if (comma <= 0) return rejected('malformed_signature_header')
    const version = entry.slice(0, comma)
    const value = entry.slice(comma + 1)
    if (version === 'v1' || version === 'v1a') {
      const signature = decodeDigest(value, 'base64', version === 'v1' ? 32 : 64)
      if (signature === undefined) return rejected('malformed_signature_header')
      ;(version === 'v1' ? v1 : v1a).push(signature)
    }
  }
  if (v1.length === 0 && v1a.length === 0) return rejected('unknown_key_version')

  const prefix = `${id}.${timestamp}.`
  let match = false
  for (const secret of secrets) {
    if (secret.startsWith('whpk_')) {
      const key = publicKey(secret)
      if (key === undefined || v1a.length === 0) continue
      const message = Buffer.concat([Buffer.from(prefix), raw])
      for (const signature of v1a) if (verifySignature(null, message, key, signature)) match = true
    } else if (v1.length > 0) {
      const key = hmacKey(secret)
      if (key !== undefined && matchesAny(hmac('sha256', key, prefix, raw), v1)) match = true
    }
  }
  return match ? verified : rejected('no_matching_signature')
}

const keys = new Map<string, Buffer | KeyObject | undefined>()

/**
 * `whsec_<base64>` (or bare base64, as the official library accepts): the HMAC key bytes, or undefined
 * when they are no key at all (empty, or every byte zero: `whsec_`, `whsec_AAAA`).
 */
export function hmacKey (secret: string): Buffer | undefined {
  if (!keys.has(secret)) {
    const encoded = secret.startsWith('whsec_') ? secret.slice(6) : secret
    const key = Buffer.from(encoded, 'base64')
    keys.set(secret, key.some(byte => byte !== 0) ? key : undefined)
  }
  return keys.get(secret) as Buffer | undefined
}

/** `whpk_<base64 of the 32-byte Ed25519 public key>`. */
function publicKey (secret: string): KeyObject | undefined {
  if (!keys.has(secret)) {
    const raw = Buffer.from(secret.slice(5), 'base64')
    let key: KeyObject | undefined
    try {
      key = raw.length === 32 ? createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' }) : undefined
    } catch {
      key = undefined
    }
    keys.set(secret, key)
  }
  return keys.get(secret) as KeyObject | undefined
}

export function signStandardWebhook (raw: Buffer, secret: string, now: number, id: string): Record<string, string> {
  const key = hmacKey(secret) ?? Buffer.alloc(0)
  return {
    'webhook-id': id,
    'webhook-timestamp': String(now),
    'webhook-signature': `v1,${hmac('sha256', key, `${id}.${now}.`, raw).toString('base64')}`
  }
}

export interface StandardWebhooksSender { name: string, secretEnv: string, toleranceSeconds?: number }

/**
 * A Standard Webhooks sender as a provider: `export default standardWebhooksProvider({ name: 'clerk',
 * secretEnv: 'CLERK_WEBHOOK_SECRET' })` in src/providers/clerk.ts receives Clerk at /webhooks/clerk.
 */
export function standardWebhooksProvider (options: StandardWebhooksSender): ProviderPlugin {
  return defineProvider(standardWebhooksDefinition(options))
}

export function standardWebhooksDefinition (options: StandardWebhooksSender): ProviderDefinition<{ type?: unknown }> {
  return {
    name: options.name,
    secretEnv: options.secretEnv,
    toleranceSeconds: options.toleranceSeconds ?? 300,
    signatureHeaders: ['webhook-signature', 'svix-signature'],
    verify: (raw, headers, secrets, now, { toleranceSeconds }) => verifyStandardWebhook(raw, headers, secrets, now, toleranceSeconds),
    identify: (event, headers) => ({
      idempotencyKey: headerValue(headers['webhook-id']) ?? headerValue(headers['svix-id']),
      eventType: event.type
    }),
    generateSecret: () => `whsec_${randomBytes(24).toString('base64')}`,
    sign: (raw, secret, now) => signStandardWebhook(raw, secret, now, `msg_${randomBytes(12).toString('hex')}`),
    sampleEvent: () => ({ type: 'user.created', timestamp: new Date().toISOString(), data: { id: `user_${randomBytes(8).toString('hex')}`, email_address: 'ada@example.com' } })
  }
}
