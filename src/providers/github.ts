import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider, formFields, isForm, parseJson } from '../provider.js'
import { headerValue } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body. No timestamp is signed:
 * the delivery id (`X-GitHub-Delivery`, the same on a redelivery) is the replay protection.
 * Webhooks set to `application/x-www-form-urlencoded` send the JSON in a `payload` field.
 * GitHub does not retry by itself (redeliveries are manual or via its API) and sends up to 25 MB.
 */
export const githubSignature = hmacScheme({ algorithm: 'sha256', header: 'x-hub-signature-256', prefix: 'sha256=', encoding: 'hex' })

export default defineProvider<{ action?: unknown }>({
  name: 'github',
  secretEnv: 'GITHUB_WEBHOOK_SECRET',
  signatureHeaders: ['x-hub-signature-256', 'x-hub-signature'],
  contentTypes: ['application/json', 'application/x-www-form-urlencoded'],
  bodyLimit: 25 * 1024 * 1024,
  verify: (raw, headers, secrets, now, { toleranceSeconds }) => githubSignature.verify(raw, headers, secrets, now, toleranceSeconds),
  parse: (raw, contentType) => {
    if (!isForm(contentType)) return parseJson(raw.toString('utf8'))
    const { payload } = formFields(raw)
    if (typeof payload !== 'string') throw new Error('form body without a payload field')
    return parseJson(payload)
  },
  identify: (event, headers) => {
    const name = headerValue(headers['x-github-event'])
    return {
      idempotencyKey: headerValue(headers['x-github-delivery']),
      eventType: name !== undefined && typeof event.action === 'string' ? `${name}.${event.action}` : name
    }
  },
  generateSecret: () => randomBytes(24).toString('hex'),
  sign: (raw, secret, now) => ({
    ...githubSignature.sign(raw, secret, now),
    'x-github-event': 'issues',
    'x-github-delivery': randomUUID()
  }),
  sampleEvent: () => ({
    action: 'opened',
    issue: { number: 1347, title: 'Found a bug', state: 'open' },
    repository: { id: 1296269, full_name: 'octocat/Hello-World' },
    sender: { login: 'octocat', id: 1 }
  })
})
