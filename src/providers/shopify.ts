import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider } from '../provider.js'
import { headerValue } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * Shopify: `X-Shopify-Hmac-Sha256` = base64 HMAC-SHA256 of the raw body, keyed with the app's client
 * secret, and nothing else: no timestamp, and none of the headers (topic, shop, event and webhook
 * ids) is signed. A delivery without the headers Shopify always sends (topic, shop domain, API
 * version, webhook id, event id) is a 400 `missing_headers`, as Shopify's own library answers.
 * Idempotency key: `X-Shopify-Event-Id` (one event sent to several subscriptions has one). The same
 * signed bytes under another key and the same topic are a duplicate of the first run (replay guard;
 * the topic is part of it because one order may be sent, byte for byte, as two topics: orders/create
 * and orders/paid). The topic is not signed: it must agree with the resource the body names
 * (shopifyTopicAgrees), else 400 `topic_mismatch`, so a captured body cannot be replayed as another
 * resource's event (a refunds/create made of an order). Shopify retries 8 times over 4 hours.
 */
export const shopifySignature = hmacScheme({ algorithm: 'sha256', header: 'x-shopify-hmac-sha256', encoding: 'base64' })

/**
 * The resource of each topic (`orders/paid` → `orders`) whose payload names itself in
 * `admin_graphql_api_id` (`gid://shopify/Order/820982911946154508`), with that name's type.
 */
const TOPIC_RESOURCES: Readonly<Record<string, string>> = {
  orders: 'Order',
  draft_orders: 'DraftOrder',
  order_transactions: 'OrderTransaction',
  refunds: 'Refund',
  fulfillments: 'Fulfillment',
  fulfillment_events: 'FulfillmentEvent',
  products: 'Product',
  variants: 'ProductVariant',
  inventory_items: 'InventoryItem',
  collections: 'Collection',
  customers: 'Customer',
  companies: 'Company',
  company_locations: 'CompanyLocation',
  locations: 'Location',
  themes: 'OnlineStoreTheme',
  disputes: 'ShopifyPaymentsDispute',
  selling_plan_groups: 'SellingPlanGroup',
  markets: 'Market'
}
const KNOWN_TYPES = new Set(Object.values(TOPIC_RESOURCES))

/**
 * Whether the unsigned topic agrees with the signed body: a body that names itself as one of the
 * resources above (its `admin_graphql_api_id`) must come under a topic of that resource. A body that
 * names nothing, or a type not listed, cannot be checked (app/uninstalled, shop/update, the GDPR topics).
 */
export function shopifyTopicAgrees (topic: string, event: Record<string, unknown>): boolean {
  const id = event.admin_graphql_api_id
  const type = typeof id === 'string' ? /^gid:\/\/shopify\/([A-Za-z]+)\//.exec(id)?.[1] : undefined
  if (type === undefined || !KNOWN_TYPES.has(type)) return true
  return TOPIC_RESOURCES[topic.split('/')[0]] === type
}

export default defineProvider<Record<string, unknown>>({
  name: 'shopify',
  secretEnv: 'SHOPIFY_WEBHOOK_SECRET',
  signatureHeaders: shopifySignature.signatureHeaders,
  // shopify-app-js refuses a delivery without X-Shopify-Event-Id: so do we (400 missing_headers).
  requiredHeaders: ['x-shopify-topic', 'x-shopify-shop-domain', 'x-shopify-api-version', 'x-shopify-webhook-id', 'x-shopify-event-id'],
  replayGuard: 'body+type',
  verify: shopifySignature.verify,
  identify: (event, headers) => {
    const topic = headerValue(headers['x-shopify-topic']) ?? ''
    return {
      idempotencyKey: headerValue(headers['x-shopify-event-id']),
      eventType: topic,
      refuse: shopifyTopicAgrees(topic, event) ? undefined : 'topic_mismatch'
    }
  },
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
