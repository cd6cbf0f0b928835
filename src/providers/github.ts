import { randomBytes, randomUUID } from 'node:crypto'
import { defineProvider, formFields, parseJson } from '../provider.js'
import { headerValue } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the raw body, and nothing else: no
 * timestamp, and neither the delivery id (`X-GitHub-Delivery`, the key) nor the event name
 * (`X-GitHub-Event`) is signed. So the same signed bytes under another delivery id are a duplicate of
 * the first run (replay guard). Webhooks set to `application/x-www-form-urlencoded` send the JSON in
 * a `payload` field: which form a body is follows from its bytes, and the Content-Type must agree.
 * GitHub does not retry by itself (redeliveries are manual or via its API) and sends up to 25 MB.
 */
export const githubSignature = hmacScheme({ algorithm: 'sha256', header: 'x-hub-signature-256', prefix: 'sha256=', encoding: 'hex' })

export default defineProvider<{ action?: unknown }>({
  name: 'github',
  secretEnv: 'GITHUB_WEBHOOK_SECRET',
  signatureHeaders: ['x-hub-signature-256', 'x-hub-signature'],
  contentTypes: ['application/json', 'application/x-www-form-urlencoded'],
  bodyLimit: 25 * 1024 * 1024,
  verify: githubSignature.verify,
  replayGuard: 'body',
  parse: (raw, form) => {
    if (!form) return parseJson(raw.toString('utf8'))
    const fields = formFields(raw)
    if (typeof fields.payload !== 'string' || Object.keys(fields).length !== 1) throw new Error('a form body is one payload field')
    return parseJson(fields.payload)
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
