import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import type { VerifyResult } from '../signatures.js'
import { timestampedScheme, verifyTimestampedHeader, type TimestampedHeader } from '../schemes/timestamped.js'

/**
 * Paddle Billing: `Paddle-Signature: ts=<unix s>;h1=<hex>[;h1=...]`, HMAC-SHA256 of `${ts}:${rawBody}`
 * keyed with the notification secret. Paddle's SDK allows 5 s of clock difference: so do we by
 * default (PADDLE_TOLERANCE_SECONDS). Idempotency key: `event_id`.
 */
const PADDLE: TimestampedHeader = { itemSeparator: ';', timestampKey: 'ts', signatureKey: 'h1', contentSeparator: ':' }
const paddleScheme = timestampedScheme(PADDLE, 'paddle-signature')

export function verifyPaddleSignature (
  raw: Buffer, header: string | undefined, secrets: readonly string[], now: number, toleranceSeconds: number
): VerifyResult {
  return verifyTimestampedHeader(PADDLE, raw, header, secrets, now, toleranceSeconds)
}

export default defineProvider<{ event_id?: unknown, event_type?: unknown }>({
  name: 'paddle',
  secretEnv: 'PADDLE_WEBHOOK_SECRET',
  toleranceSeconds: 5,
  signatureHeaders: paddleScheme.signatureHeaders,
  verify: paddleScheme.verify,
  identify: event => ({ idempotencyKey: event.event_id, eventType: event.event_type }),
  generateSecret: () => `pdl_ntfset_${randomBytes(24).toString('hex')}`,
  sign: paddleScheme.sign,
  sampleEvent: () => ({
    event_id: `evt_${randomUUID().replaceAll('-', '')}`,
    event_type: 'transaction.completed',
    occurred_at: new Date().toISOString(),
    notification_id: `ntf_${randomUUID().replaceAll('-', '')}`,
    data: { id: 'txn_01h', status: 'completed', currency_code: 'EUR' }
  })
})
