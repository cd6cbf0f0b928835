import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import type { VerifyResult } from '../signatures.js'
import { signTimestampedHeader, timestampedScheme, verifyTimestampedHeader, type TimestampedHeader } from '../schemes/timestamped.js'

/**
 * Stripe: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of `${t}.${rawBody}`
 * keyed with the whole `whsec_...` string (as UTF-8, not base64-decoded). Any v1 may match.
 * As in Stripe's library a `v1` that cannot be decoded matches nothing, and one beside it may match.
 * Idempotency key: the event's `id` (signed). Stripe retries for up to 3 days.
 */
const STRIPE: TimestampedHeader = { itemSeparator: ',', timestampKey: 't', signatureKey: 'v1', contentSeparator: '.', skipUndecodable: true }
const stripeScheme = timestampedScheme(STRIPE, 'stripe-signature')

export function verifyStripeSignature (
  raw: Buffer, header: string | undefined, secrets: readonly string[], now: number, toleranceSeconds: number
): VerifyResult {
  return verifyTimestampedHeader(STRIPE, raw, header, secrets, now, toleranceSeconds)
}

/** The header Stripe would send for `raw` at `now`: used by `npm run send`. */
export function signStripePayload (raw: Buffer, secret: string, now: number): string {
  return signTimestampedHeader(STRIPE, raw, secret, now)
}

const shortId = () => randomUUID().replaceAll('-', '').slice(0, 24)

export default defineProvider<{ id?: unknown, type?: unknown }>({
  name: 'stripe',
  secretEnv: 'STRIPE_WEBHOOK_SECRET',
  toleranceSeconds: 300,
  signatureHeaders: stripeScheme.signatureHeaders,
  verify: stripeScheme.verify,
  identify: event => ({ idempotencyKey: event.id, eventType: event.type }),
  generateSecret: () => `whsec_${randomBytes(24).toString('base64url')}`,
  sign: stripeScheme.sign,
  sampleEvent: () => ({
    id: `evt_${shortId()}`,
    object: 'event',
    api_version: '2024-06-20',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    type: 'payment_intent.succeeded',
    data: { object: { id: `pi_${shortId()}`, object: 'payment_intent', amount: 2000, currency: 'usd', status: 'succeeded' } }
  })
})
