import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider, parseJson } from '../provider.js'
import { headerValue, rejected, verified, type VerifyResult } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * Linear: `linear-signature` = hex HMAC-SHA256 of the raw body. The timestamp is inside the signed
 * body (`webhookTimestamp`, milliseconds) and must be within 60 s, so it is read only once the
 * signature has matched. Idempotency key: `Linear-Delivery`, a header the signature does not cover:
 * the same signed bytes under another delivery id are a duplicate of the first run (replay guard).
 */
export const linearSignature = hmacScheme({ algorithm: 'sha256', header: 'linear-signature', encoding: 'hex' })

export function verifyLinearSignature (
  raw: Buffer, headers: Parameters<typeof linearSignature.verify>[1], secrets: readonly string[], now: number, { toleranceSeconds }: { toleranceSeconds: number }
): VerifyResult {
  const signed = linearSignature.verify(raw, headers, secrets, now, { toleranceSeconds })
  if (!signed.ok) return signed
  let timestamp: unknown
  try {
    timestamp = (parseJson(raw.toString('utf8')) as { webhookTimestamp?: unknown } | null)?.webhookTimestamp
  } catch {
    return verified // signed but not JSON: the handler answers 400 malformed_payload
  }
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp)) return rejected('missing_timestamp')
  const age = now - timestamp / 1000
  if (age > toleranceSeconds) return rejected('timestamp_too_old')
  if (-age > toleranceSeconds) return rejected('timestamp_in_future')
  return verified
}

export default defineProvider<{ type?: unknown, action?: unknown }>({
  name: 'linear',
  secretEnv: 'LINEAR_WEBHOOK_SECRET',
  toleranceSeconds: 60,
  signatureHeaders: linearSignature.signatureHeaders,
  replayGuard: 'body',
  verify: verifyLinearSignature,
  identify: (event, headers) => ({
    idempotencyKey: headerValue(headers['linear-delivery']),
    eventType: typeof event.type === 'string' && typeof event.action === 'string'
      ? `${event.type}.${event.action}`
      : headerValue(headers['linear-event'])
  }),
  generateSecret: () => `lin_wh_${randomBytes(24).toString('hex')}`,
  sign: (raw, secret, now) => ({
    ...linearSignature.sign(raw, secret, now),
    'linear-delivery': randomUUID(),
    'linear-event': 'Issue'
  }),
  sampleEvent: () => ({
    action: 'create',
    type: 'Issue',
    createdAt: new Date().toISOString(),
    data: { id: randomUUID(), title: 'Webhook from npm run send', identifier: 'ENG-1' },
    webhookTimestamp: Date.now()
  })
})
