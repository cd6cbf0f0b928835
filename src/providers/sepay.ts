import { randomBytes } from 'node:crypto'
import { defineProvider } from '../provider.js'
import { apiKeyScheme } from '../schemes/api-key.js'

/**
 * SePay (Vietnamese bank-transfer notifications): `Authorization: Apikey <key>` (or `Bearer <key>`).
 * The key is compared in constant time over hashes of both sides, so neither its value nor its
 * length leaks. Idempotency key: the transaction `id`. Outgoing transfers (`transferType: "out"`)
 * are recorded as `ignored`. SePay expects `{"success": true}` and, with auto-retry, retries any
 * non-2xx 8 times over about 33 minutes.
 */
export interface SepayWebhookPayload {
  id: number
  gateway: string
  /** "YYYY-MM-DD HH:mm:ss", Vietnam time. */
  transactionDate: string
  accountNumber: string
  code: string | null
  /** The transfer memo: what payments are matched on. */
  content: string
  transferType: 'in' | 'out'
  /** VND, integer. */
  transferAmount: number
  accumulated: number
  subAccount: string | null
  referenceCode: string
  description: string
}

export const sepayApiKey = apiKeyScheme({ header: 'authorization', prefixes: ['Apikey ', 'Bearer '] })

export default defineProvider<Partial<SepayWebhookPayload>>({
  name: 'sepay',
  secretEnv: 'SEPAY_WEBHOOK_API_KEY',
  signatureHeaders: ['authorization'],
  verify: (_raw, headers, secrets) => sepayApiKey.verify(headers, secrets),
  identify: event => ({
    idempotencyKey: event.id,
    eventType: typeof event.transferType === 'string' ? `transfer.${event.transferType}` : undefined,
    ignored: event.transferType === 'out'
  }),
  respond: result => ({ success: true, ...result }),
  generateSecret: () => randomBytes(24).toString('hex'),
  sign: (_raw, secret) => sepayApiKey.sign(secret),
  sampleEvent: () => ({
    id: Math.floor(Math.random() * 1e9),
    gateway: 'Vietcombank',
    transactionDate: '2025-01-07 10:30:00',
    accountNumber: '0123499999',
    code: 'HG1234',
    content: 'HG1234 thanh toan don hang',
    transferType: 'in',
    transferAmount: 2277000,
    accumulated: 19077000,
    subAccount: null,
    referenceCode: 'MBVCB.3278907687',
    description: ''
  } satisfies SepayWebhookPayload)
})
