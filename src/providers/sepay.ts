import { randomBytes } from 'node:crypto'
import { defineProvider } from '../provider.js'
import { constantTimeEqual, headerValue, rejected, verified, MAX_SIGNATURE_HEADER_LENGTH, type VerifyResult } from '../signatures.js'

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

export function verifySepayApiKey (authorization: string | undefined, keys: readonly string[]): VerifyResult {
  if (authorization === undefined || authorization === '') return rejected('missing_signature_header')
  if (authorization.length > MAX_SIGNATURE_HEADER_LENGTH) return rejected('malformed_signature_header')
  const match = /^(Apikey|Bearer) (.+)$/i.exec(authorization)
  if (match === null) return rejected('malformed_signature_header')
  let ok = false
  for (const key of keys) {
    if (constantTimeEqual(match[2], key)) ok = true
  }
  return ok ? verified : rejected('no_matching_signature')
}

export default defineProvider<Partial<SepayWebhookPayload>>({
  name: 'sepay',
  secretEnv: 'SEPAY_WEBHOOK_API_KEY',
  signatureHeaders: ['authorization'],
  verify: (_raw, headers, secrets) => verifySepayApiKey(headerValue(headers.authorization), secrets),
  identify: event => ({
    idempotencyKey: event.id,
    eventType: typeof event.transferType === 'string' ? `transfer.${event.transferType}` : undefined,
    ignored: event.transferType === 'out'
  }),
  respond: result => ({ success: true, ...result }),
  generateSecret: () => randomBytes(24).toString('hex'),
  sign: (_raw, secret) => ({ authorization: `Apikey ${secret}` }),
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
