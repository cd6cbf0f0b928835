import { randomBytes } from 'node:crypto'
import { defineProvider, formFields, isForm } from '../provider.js'
import { constantTimeEqual, decodeDigest, headerValue, hmac, matchesAny, rejected, sha256, verified, type VerifyResult } from '../signatures.js'

/**
 * Twilio: `X-Twilio-Signature` = base64 HMAC-SHA1(auth token, URL + every POST parameter name+value,
 * sorted by name). JSON bodies are not in the signature: the URL carries `bodySHA256`, the hex SHA-256
 * of the body. The URL is the one Twilio requested: behind a load balancer set PUBLIC_BASE_URL (or
 * TRUST_PROXY so X-Forwarded-Proto/Host are believed). As in Twilio's SDK the URL is tried with and
 * without its default port. Idempotency key: `I-Twilio-Idempotency-Token`, else the message or call
 * SID with its status.
 */
export function verifyTwilioSignature (
  raw: Buffer, header: string | undefined, contentType: string, url: string, tokens: readonly string[]
): VerifyResult {
  if (header === undefined || header === '') return rejected('missing_signature_header')
  const signature = decodeDigest(header.trim(), 'base64', 20)
  if (signature === undefined) return rejected('malformed_signature_header')
  let signedParams = ''
  if (isForm(contentType)) {
    signedParams = twilioParamString(formFields(raw))
  } else {
    // A JSON body is signed through the bodySHA256 parameter of the URL.
    const bodySha = new URL(url, 'http://unused').searchParams.get('bodySHA256')
    if (bodySha === null || !constantTimeEqual(bodySha, sha256(raw).toString('hex'))) return rejected('no_matching_signature')
  }
  let match = false
  for (const token of tokens) {
    for (const candidate of withAndWithoutPort(url)) {
      if (matchesAny(hmac('sha1', token, candidate, signedParams), [signature])) match = true
    }
  }
  return match ? verified : rejected('no_matching_signature')
}

/** Names sorted, each value (repeated names: distinct values, sorted) appended after its name. */
export function twilioParamString (params: Record<string, string | string[]>): string {
  let out = ''
  for (const name of Object.keys(params).sort()) {
    const value = params[name]
    for (const item of Array.isArray(value) ? [...new Set(value)].sort() : [value]) out += name + item
  }
  return out
}

/** `https://host/x` and `https://host:443/x`: Twilio may have signed either. */
export function withAndWithoutPort (url: string): string[] {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#@]*@)?(\[[^\]]*\]|[^/?#:]*)(:\d+)?(.*)$/i.exec(url)
  if (match === null) return [url]
  const [, scheme, userInfo = '', host, , rest] = match
  const port = scheme.toLowerCase() === 'https://' ? ':443' : ':80'
  return [scheme + userInfo + host + rest, scheme + userInfo + host + port + rest]
}

export function signTwilioRequest (raw: Buffer, token: string, url: string, contentType = 'application/x-www-form-urlencoded'): string {
  const params = isForm(contentType) ? twilioParamString(formFields(raw)) : ''
  return hmac('sha1', token, url, params).toString('base64')
}

type TwilioEvent = Record<string, unknown>
const text = (value: unknown): string | undefined => typeof value === 'string' && value !== '' ? value : undefined

export default defineProvider<TwilioEvent>({
  name: 'twilio',
  secretEnv: 'TWILIO_AUTH_TOKEN',
  signatureHeaders: ['x-twilio-signature'],
  contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  verify: (raw, headers, tokens, _now, { url }) =>
    verifyTwilioSignature(raw, headerValue(headers['x-twilio-signature']), headerValue(headers['content-type']) ?? '', url, tokens),
  identify: (event, headers) => {
    const messageStatus = text(event.MessageStatus) ?? text(event.SmsStatus)
    const callStatus = text(event.CallStatus)
    const sid = text(event.MessageSid) ?? text(event.SmsSid)
    const fallback = sid !== undefined && messageStatus !== undefined
      ? `${sid}:${messageStatus}`
      : text(event.CallSid) !== undefined && callStatus !== undefined ? `${text(event.CallSid)}:${callStatus}` : undefined
    return {
      idempotencyKey: headerValue(headers['i-twilio-idempotency-token']) ?? fallback,
      eventType: messageStatus !== undefined ? `message.${messageStatus}` : callStatus !== undefined ? `call.${callStatus}` : undefined
    }
  },
  generateSecret: () => randomBytes(16).toString('hex'),
  sign: (raw, token, _now, url) => ({
    'x-twilio-signature': signTwilioRequest(raw, token, url),
    'i-twilio-idempotency-token': randomBytes(16).toString('hex')
  }),
  sampleEvent: () => ({
    MessageSid: `SM${randomBytes(16).toString('hex')}`,
    MessageStatus: 'delivered',
    AccountSid: `AC${randomBytes(16).toString('hex')}`,
    From: '+14158675309',
    To: '+18005551212'
  })
})
