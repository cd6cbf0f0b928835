import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import { headerValue } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * Shopify: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body, keyed with the app's client
 * secret. Idempotency key: `X-Shopify-Event-Id` (the same on every delivery of one event), else
 * `X-Shopify-Webhook-Id`. Shopify retries 8 times over 4 hours.
 */
export const shopifySignature = hmacScheme({ algorithm: 'sha256', header: 'x-shopify-hmac-sha256', encoding: 'base64' })

export default defineProvider({
  name: 'shopify',
  secretEnv: 'SHOPIFY_WEBHOOK_SECRET',
  signatureHeaders: ['x-shopify-hmac-sha256'],
  verify: (raw, headers, secrets, now, { toleranceSeconds }) => shopifySignature.verify(raw, headers, secrets, now, toleranceSeconds),
  identify: (_event, headers) => ({
    idempotencyKey: headerValue(headers['x-shopify-event-id']) ?? headerValue(headers['x-shopify-webhook-id']),
    eventType: headerValue(headers['x-shopify-topic'])
  }),
  generateSecret: () => randomBytes(24).toString('hex'),
  sign: (raw, secret, now) => ({
    ...shopifySignature.sign(raw, secret, now),
    'x-shopify-topic': 'orders/create',
    'x-shopify-shop-domain': 'example.myshopify.com',
    'x-shopify-event-id': randomUUID(),
    'x-shopify-webhook-id': randomUUID()
  }),
  sampleEvent: () => ({ id: 820982911946154500, email: 'jon@example.com', total_price: '403.00', currency: 'USD' })
})
