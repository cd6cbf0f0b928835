import { createHmac, randomBytes, randomUUID } from 'node:crypto'
import Stripe from 'stripe'
import { sign as signGithub } from '@octokit/webhooks-methods'
import { Webhook as StandardWebhook } from 'standardwebhooks'
import twilio from 'twilio'

/**
 * How each real sender signs a delivery, done with the sender's official SDK where one exists
 * (stripe, @octokit/webhooks-methods, standardwebhooks, twilio) and otherwise with node:crypto
 * written out here from the provider's documentation (Shopify, Slack, Paddle, Linear), never with
 * hookgate's own signer. Published vectors are checked separately (provider-signatures.test.ts).
 */
export interface Sender {
  name: string
  /** The variable and its two secrets: `current,previous` (rotation). */
  secretEnv: string
  secrets: [string, string]
  /** A well-formed secret that is not one of them. */
  wrongSecret?: string
  /** Whether the body itself is signed (SePay sends an API key instead). */
  signsBody: boolean
  /** Whether a timestamp is signed, so stale and future deliveries are refused. */
  timestamped: boolean
  /** The header that carries the signature or key. */
  signatureHeader: string
  /** A new event, signed with `secret` at `timestamp`: what app.inject() takes, and the idempotency key. */
  deliver: (secret: string, options?: { timestamp?: number, body?: Record<string, unknown> }) => Promise<Delivery>
}

export interface Delivery {
  url: string
  headers: Record<string, string>
  payload: string
  key: string
}

const now = () => Math.floor(Date.now() / 1000)
const hex = (n: number) => randomBytes(n).toString('hex')
const json = { 'content-type': 'application/json' }
export const TWILIO_PUBLIC_BASE_URL = 'https://hooks.example.com'

const stripe = new Stripe('sk_test_hookgate')

export const senders: Sender[] = [
  {
    name: 'stripe',
    secretEnv: 'STRIPE_WEBHOOK_SECRET',
    secrets: ['whsec_current_stripe_secret', 'whsec_previous_stripe_secret'],
    signsBody: true,
    timestamped: true,
    signatureHeader: 'stripe-signature',
    deliver: async (secret, { timestamp = now(), body } = {}) => {
      const key = `evt_${hex(12)}`
      const payload = JSON.stringify(body ?? { id: key, object: 'event', type: 'charge.succeeded', data: { object: { id: 'ch_1' } } })
      const signature = stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp })
      return { url: '/webhooks/stripe', headers: { ...json, 'stripe-signature': signature }, payload, key }
    }
  },
  {
    name: 'github',
    secretEnv: 'GITHUB_WEBHOOK_SECRET',
    secrets: ["It's a Secret to Everybody", 'previous github secret'],
    signsBody: true,
    timestamped: false,
    signatureHeader: 'x-hub-signature-256',
    deliver: async (secret, { body } = {}) => {
      const key = randomUUID()
      const payload = JSON.stringify(body ?? { action: 'opened', issue: { number: 1 }, repository: { full_name: 'octo/repo' } })
      return {
        url: '/webhooks/github',
        headers: { ...json, 'x-hub-signature-256': await signGithub(secret, payload), 'x-github-event': 'issues', 'x-github-delivery': key },
        payload,
        key
      }
    }
  },
  {
    name: 'standard-webhooks',
    secretEnv: 'STANDARD_WEBHOOKS_SECRET',
    secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', `whsec_${randomBytes(24).toString('base64')}`],
    wrongSecret: `whsec_${randomBytes(24).toString('base64')}`,
    signsBody: true,
    timestamped: true,
    signatureHeader: 'webhook-signature',
    deliver: async (secret, { timestamp = now(), body } = {}) => {
      const key = `msg_${hex(12)}`
      const payload = JSON.stringify(body ?? { type: 'user.created', data: { id: 'user_1' } })
      return {
        url: '/webhooks/standard-webhooks',
        headers: {
          ...json,
          'webhook-id': key,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': new StandardWebhook(secret).sign(key, new Date(timestamp * 1000), payload)
        },
        payload,
        key
      }
    }
  },
  {
    name: 'shopify',
    secretEnv: 'SHOPIFY_WEBHOOK_SECRET',
    secrets: ['test_secret_key', 'previous_shopify_secret'],
    signsBody: true,
    timestamped: false,
    signatureHeader: 'x-shopify-hmac-sha256',
    deliver: async (secret, { body } = {}) => {
      const key = randomUUID()
      const payload = JSON.stringify(body ?? { id: 820982911946154500, email: 'jon@example.com' })
      return {
        url: '/webhooks/shopify',
        headers: {
          ...json,
          'x-shopify-hmac-sha256': createHmac('sha256', secret).update(payload).digest('base64'),
          'x-shopify-topic': 'orders/create',
          'x-shopify-shop-domain': 'example.myshopify.com',
          'x-shopify-api-version': '2025-01',
          'x-shopify-event-id': key,
          'x-shopify-webhook-id': randomUUID()
        },
        payload,
        key
      }
    }
  },
  {
    name: 'slack',
    secretEnv: 'SLACK_SIGNING_SECRET',
    secrets: ['8f742231b10e8888abcd99yyyzzz85a5', 'previous_slack_signing_secret'],
    signsBody: true,
    timestamped: true,
    signatureHeader: 'x-slack-signature',
    deliver: async (secret, { timestamp = now(), body } = {}) => {
      const key = `Ev${hex(5).toUpperCase()}`
      const payload = JSON.stringify(body ?? { type: 'event_callback', event_id: key, event: { type: 'app_mention', text: 'hi' } })
      const signature = 'v0=' + createHmac('sha256', secret).update(`v0:${timestamp}:${payload}`).digest('hex')
      return {
        url: '/webhooks/slack',
        headers: { ...json, 'x-slack-signature': signature, 'x-slack-request-timestamp': String(timestamp) },
        payload,
        key
      }
    }
  },
  {
    name: 'sepay',
    secretEnv: 'SEPAY_WEBHOOK_API_KEY',
    secrets: ['sepay_current_api_key', 'sepay_previous_api_key'],
    signsBody: false,
    timestamped: false,
    signatureHeader: 'authorization',
    deliver: async (secret, { body } = {}) => {
      const id = Math.floor(Math.random() * 1e12)
      const payload = JSON.stringify(body ?? {
        id,
        gateway: 'Vietcombank',
        transactionDate: '2025-01-07 10:30:00',
        accountNumber: '0123499999',
        code: null,
        content: 'HG1234 thanh toán',
        transferType: 'in',
        transferAmount: 2277000,
        accumulated: 19077000,
        subAccount: null,
        referenceCode: 'MBVCB.3278907687',
        description: ''
      })
      return { url: '/webhooks/sepay', headers: { ...json, authorization: `Apikey ${secret}` }, payload, key: String(id) }
    }
  },
  {
    name: 'paddle',
    secretEnv: 'PADDLE_WEBHOOK_SECRET',
    secrets: ['VALID_SECRET', 'pdl_previous_secret'],
    signsBody: true,
    timestamped: true,
    signatureHeader: 'paddle-signature',
    deliver: async (secret, { timestamp = now(), body } = {}) => {
      const key = `evt_${hex(13)}`
      const payload = JSON.stringify(body ?? { event_id: key, event_type: 'transaction.completed', data: { id: 'txn_1' } })
      const h1 = createHmac('sha256', secret).update(`${timestamp}:${payload}`).digest('hex')
      return { url: '/webhooks/paddle', headers: { ...json, 'paddle-signature': `ts=${timestamp};h1=${h1}` }, payload, key }
    }
  },
  {
    name: 'twilio',
    secretEnv: 'TWILIO_AUTH_TOKEN',
    secrets: ['current_twilio_auth_token', 'previous_twilio_token'],
    // Not Twilio's documented '12345': five digits turn up by chance in timestamps and ids, and the
    // secret-leak check below would fail for nothing (its published vector is in provider-signatures.test.ts).
    signsBody: true,
    timestamped: false,
    signatureHeader: 'x-twilio-signature',
    deliver: async (secret, { body } = {}) => {
      const token = hex(16)
      const params: Record<string, string> = (body as Record<string, string> | undefined) ??
        { MessageSid: `SM${hex(16)}`, MessageStatus: 'delivered', From: '+14158675309', To: '+18005551212', Body: 'Hé 👋' }
      // The key is taken from the signed parameters where they carry one; the token header is not signed.
      const key = params.MessageSid !== undefined && params.MessageStatus !== undefined ? `${params.MessageSid}:${params.MessageStatus}` : token
      const path = '/webhooks/twilio'
      return {
        url: path,
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          'x-twilio-signature': twilio.getExpectedTwilioSignature(secret, TWILIO_PUBLIC_BASE_URL + path, params),
          'i-twilio-idempotency-token': token
        },
        payload: new URLSearchParams(params).toString(),
        key
      }
    }
  },
  {
    name: 'linear',
    secretEnv: 'LINEAR_WEBHOOK_SECRET',
    secrets: ['lin_wh_current_secret', 'lin_wh_previous_secret'],
    signsBody: true,
    timestamped: true,
    signatureHeader: 'linear-signature',
    deliver: async (secret, { timestamp = now(), body } = {}) => {
      const key = randomUUID()
      const payload = JSON.stringify(body ?? { action: 'create', type: 'Issue', data: { id: randomUUID() }, webhookTimestamp: timestamp * 1000 })
      return {
        url: '/webhooks/linear',
        headers: { ...json, 'linear-signature': createHmac('sha256', secret).update(payload).digest('hex'), 'linear-delivery': key, 'linear-event': 'Issue' },
        payload,
        key
      }
    }
  }
]

/** A no-code provider (PROVIDERS_CONFIG): HMAC-SHA256, base64, over `{timestamp}.{body}`, key from a JSON path. */
export const GENERIC_PROVIDER = {
  name: 'generic',
  secretEnv: 'GENERIC_WEBHOOK_SECRET',
  scheme: 'hmac',
  hmac: { algorithm: 'sha256', header: 'x-generic-signature', prefix: 'v1=', encoding: 'base64', signedContent: '{timestamp}.{body}', timestampHeader: 'x-generic-timestamp' },
  toleranceSeconds: 300,
  idempotencyKey: { path: 'meta.delivery_id' },
  eventType: { path: 'kind' }
}

senders.push({
  name: 'generic',
  secretEnv: 'GENERIC_WEBHOOK_SECRET',
  secrets: ['generic current secret', 'generic previous secret'],
  signsBody: true,
  timestamped: true,
  signatureHeader: 'x-generic-signature',
  deliver: async (secret, { timestamp = now(), body } = {}) => {
    const key = `dlv_${hex(10)}`
    const payload = JSON.stringify(body ?? { kind: 'order.shipped', meta: { delivery_id: key } })
    const signature = 'v1=' + createHmac('sha256', secret).update(`${timestamp}.${payload}`).digest('base64')
    return { url: '/webhooks/generic', headers: { ...json, 'x-generic-signature': signature, 'x-generic-timestamp': String(timestamp) }, payload, key }
  }
})

/** The environment that enables every sender with both of its secrets. */
export function allSecrets (): Record<string, string> {
  return {
    ...Object.fromEntries(senders.map(sender => [sender.secretEnv, JSON.stringify(sender.secrets)])),
    PROVIDERS_CONFIG: JSON.stringify([GENERIC_PROVIDER])
  }
}
