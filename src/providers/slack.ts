import { randomBytes } from 'node:crypto'
import { bodyForm, defineProvider, formFields, isForm } from '../provider.js'
import { headerValue, sha256 } from '../signatures.js'
import { hmacScheme } from '../schemes/hmac.js'

/**
 * Slack: `X-Slack-Signature: v0=<hex>`, HMAC-SHA256 of `v0:${X-Slack-Request-Timestamp}:${rawBody}`
 * with the signing secret; 5 minutes of tolerance. Events API bodies are JSON (idempotency key
 * `event_id`; the `url_verification` handshake is answered with its challenge). Slash commands and
 * interactivity are form-encoded and carry no id: their key is the hash of the signed request, so a
 * retried request (same timestamp and body) is a duplicate. Which of the two a body is follows from
 * its signed bytes, never from the Content-Type (a JSON event re-posted as a form is refused).
 * Slack retries 3 times (now, ~1, ~5 min).
 */
export const slackSignature = hmacScheme({
  algorithm: 'sha256',
  header: 'x-slack-signature',
  prefix: 'v0=',
  encoding: 'hex',
  signedContent: 'v0:{timestamp}:{body}',
  timestampHeader: 'x-slack-request-timestamp'
})

type SlackEvent = Record<string, unknown> & { event?: { type?: unknown } }

/**
 * Slack's certificate check (`ssl_check=1`, form-encoded, unsigned): Bolt answers it 200 with an empty
 * body before any verification, and so does hookgate, storing nothing. Only a short form body whose
 * `ssl_check` is `1` qualifies; anything else goes through the signature check.
 */
export function slackSslCheck (raw: Buffer, headers: Record<string, string | string[] | undefined>): '' | undefined {
  if (raw.length > 1024 || !isForm(headerValue(headers['content-type']) ?? '') || bodyForm(raw) !== 'form') return undefined
  try {
    return formFields(raw).ssl_check === '1' ? '' : undefined
  } catch {
    return undefined
  }
}

export default defineProvider<SlackEvent>({
  name: 'slack',
  secretEnv: 'SLACK_SIGNING_SECRET',
  toleranceSeconds: 300,
  signatureHeaders: slackSignature.signatureHeaders,
  contentTypes: ['application/json', 'application/x-www-form-urlencoded'],
  verify: slackSignature.verify,
  unsignedProbe: slackSslCheck,
  handshake: event => event.type === 'url_verification' && typeof event.challenge === 'string' ? { challenge: event.challenge } : undefined,
  identify: (event, headers, raw) => {
    if (bodyForm(raw) === 'json') {
      return { idempotencyKey: event.event_id, eventType: event.event?.type ?? event.type }
    }
    const timestamp = headerValue(headers['x-slack-request-timestamp']) ?? ''
    return {
      idempotencyKey: `request_${sha256(Buffer.concat([Buffer.from(`v0:${timestamp}:`), raw])).toString('hex')}`,
      eventType: typeof event.command === 'string' ? `command${event.command.replaceAll('/', '.')}` : 'interactivity'
    }
  },
  generateSecret: () => randomBytes(16).toString('hex'),
  sign: (raw, secret, now) => slackSignature.sign(raw, secret, now),
  sampleEvent: () => ({
    token: 'unused',
    team_id: 'T061EG9R6',
    type: 'event_callback',
    event_id: `Ev${randomBytes(6).toString('hex').toUpperCase()}`,
    event_time: Math.floor(Date.now() / 1000),
    event: { type: 'app_mention', user: 'U061F7AUR', text: '<@U0LAN0Z89> is it everything a river should be?', channel: 'C0LAN2Q65' }
  })
})
