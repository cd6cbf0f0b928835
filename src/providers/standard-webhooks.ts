import { standardWebhooksProvider } from '../schemes/standard-webhooks.js'

/** Any Standard Webhooks sender at /webhooks/standard-webhooks. Copy this file to receive another one. */
export default standardWebhooksProvider({ name: 'standard-webhooks', secretEnv: 'STANDARD_WEBHOOKS_SECRET' })
