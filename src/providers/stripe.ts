import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import {
  type VerifyResult, checkTimestamp, decodeHex, headerValue, hmac, matchesAny, rejected, verified,
  MAX_SIGNATURE_HEADER_LENGTH
} from '../signatures.js'

/**
 * Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of `${t}.${rawBody}`
 * keyed with the whole `whsec_...` string. Any v1 may match (Stripe sends one per active secret
 * while a secret is rolled). The timestamp is checked before any HMAC is computed.
 */
export function verifyStripeSignature (
  raw: Buffer, header: string | undefined, secrets: readonly string[], now: number, toleranceSeconds: number
): VerifyResult {
  if (header === undefined || header === '') return rejected('missing_signature_header')
  if (header.length > MAX_SIGNATURE_HEADER_LENGTH) return rejected('malformed_signature_header')

  let timestamp: string | undefined
  const v1: Buffer[] = []
  let otherSchemes = 0
  for (const item of header.split(',')) {
    const eq = item.indexOf('=')
    if (eq <= 0) return rejected('malformed_signature_header')
    const key = item.slice(0, eq).trim()
    const value = item.slice(eq + 1).trim()
    if (key === 't') {
      if (timestamp !== undefined) return rejected('malformed_signature_header')
      timestamp = value
    } else if (key === 'v1') {
      const signature = decodeHex(value, 32)
      if (signature === undefined) return rejected('malformed_signature_header')
      v1.push(signature)
    } else {
      otherSchemes++
    }
  }
  if (v1.length === 0) return rejected(otherSchemes > 0 ? 'unknown_key_version' : 'malformed_signature_header')
  const fresh = checkTimestamp(timestamp, now, toleranceSeconds)
  if (!fresh.ok) return fresh

  let match = false
  for (const secret of secrets) {
    if (matchesAny(hmac('sha256', secret, `${timestamp}.`, raw), v1)) match = true
  }
  return match ? verified : rejected('no_matching_signature')
}

/** The header Stripe would send for `raw` at `now`: used by `npm run send`. */
export function signStripePayload (raw: Buffer, secret: string, now: number): string {
  return `t=${now},v1=${hmac('sha256', secret, `${now}.`, raw).toString('hex')}`
}

interface StripeEvent { id?: unknown, type?: unknown }

export default defineProvider<StripeEvent>({
  name: 'stripe',
  secretEnv: 'STRIPE_WEBHOOK_SECRET',
  toleranceSeconds: 300,
  signatureHeaders: ['stripe-signature'],
  verify: (raw, headers, secrets, now, tolerance) =>
    verifyStripeSignature(raw, headerValue(headers['stripe-signature']), secrets, now, tolerance),
  identify: event => ({ idempotencyKey: event.id, eventType: event.type }),
  generateSecret: () => `whsec_${randomBytes(24).toString('base64url')}`,
  sign: (raw, secret, now) => ({ 'stripe-signature': signStripePayload(raw, secret, now) }),
  sampleEvent: () => ({
    id: `evt_${randomUUID().replaceAll('-', '').slice(0, 24)}`,
    object: 'event',
    api_version: '2024-06-20',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    type: 'payment_intent.succeeded',
    data: {
      object: { id: `pi_${randomUUID().replaceAll('-', '').slice(0, 24)}`, object: 'payment_intent', amount: 2000, currency: 'usd', status: 'succeeded' }
    }
  })
})
