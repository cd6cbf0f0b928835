import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import { headerValue } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * Shopify: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body, keyed with the app's client
 * secret, and nothing else: no timestamp, and none of the headers (topic, shop, event and webhook
 * ids) is signed. A delivery without the headers Shopify always sends (topic, shop domain, API
 * version, webhook id) is a 400 `missing_headers`, as Shopify's own library answers. Idempotency key:
 * `X-Shopify-Event-Id` (one event sent to several subscriptions has one), else `X-Shopify-Webhook-Id`.
 * The same signed bytes under another key and the same topic are a duplicate of the first run
 * (replay guard; the topic is part of it because one order may be sent, byte for byte, as two
 * topics: orders/create and orders/paid). Shopify retries 8 times over 4 hours.
 */
export const shopifySignature = hmacScheme({ algorithm: 'sha256', header: 'x-shopify-hmac-sha256', encoding: 'base64' })

export default defineProvider({
  name: 'shopify',
  secretEnv: 'SHOPIFY_WEBHOOK_SECRET',
  signatureHeaders: shopifySignature.signatureHeaders,
  requiredHeaders: ['x-shopify-topic', 'x-shopify-shop-domain', 'x-shopify-api-version', 'x-shopify-webhook-id'],
  replayGuard: 'body+type',
  verify: shopifySignature.verify,
  identify: (_event, headers) => ({
    idempotencyKey: headerValue(headers['x-shopify-event-id']) ?? headerValue(headers['x-shopify-webhook-id']),
    eventType: headerValue(headers['x-shopify-topic'])
  }),
  generateSecret: () => randomBytes(24).toString('hex'),
  sign: (raw, secret, now) => ({
    ...shopifySignature.sign(raw, secret, now),
    'x-shopify-topic': 'orders/create',
    'x-shopify-shop-domain': 'example.myshopify.com',
    'x-shopify-api-version': '2025-01',
    'x-shopify-event-id': randomUUID(),
    'x-shopify-webhook-id': randomUUID()
  }),
  sampleEvent: () => ({ id: 820982911946154500, email: 'jon@example.com', total_price: '403.00', currency: 'USD' })
})
