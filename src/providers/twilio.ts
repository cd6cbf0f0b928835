import { randomBytes } from 'node:crypto'
import { parse as parseQuery, stringify as stringifyQuery } from 'node:querystring'
import type { IncomingHttpHeaders } from 'node:http'
import { bodyForm, defineProvider, formFields, type Identity } from '../provider.js'
import { constantTimeEqual, decodeDigest, headerValue, hmac, matchesAny, rejected, sha256, verified, type VerifyResult } from '../signatures.js'

/**
 * Twilio: `X-Twilio-Signature` = base64 HMAC-SHA1(auth token, URL + every POST parameter name+value,
 * sorted by name). JSON bodies are not in the signature: the URL carries `bodySHA256`, the hex SHA-256
 * of the body. Which of the two a request is follows from the signed URL (with `bodySHA256`: the body
 * must hash to it and be JSON), never from the Content-Type. The URL is the one Twilio requested:
 * behind a load balancer set PUBLIC_BASE_URL (or TRUST_PROXY so X-Forwarded-Proto/Host are believed).
 * As in Twilio's SDK the URL is tried as received (without its port, and with its port or the
 * default one), then normalised, then with a legacy-encoded query string. Nothing with a time is
 * signed: the key is taken from the signed parameters (twilioIdentity) where they are, else from
 * `I-Twilio-Idempotency-Token`, and the same signed content under another token is a duplicate of the
 * first run (replay guard, on twilioSignedContent).
 */
export function verifyTwilioSignature (
  raw: Buffer, header: string | undefined, url: string, tokens: readonly string[]
): VerifyResult {
  if (header === undefined || header === '') return rejected('missing_signature_header')
  const signature = decodeDigest(header.trim(), 'base64', 20)
  if (signature === undefined) return rejected('malformed_signature_header')
  let signedParams = ''
  const bodySha = bodySha256Of(url)
  if (bodySha === undefined) {
    if (bodyForm(raw) !== 'form') return rejected('no_matching_signature')
    let fields: Record<string, string | string[]>
    try {
      fields = formFields(raw)
    } catch {
      return rejected('too_many_fields')
    }
    signedParams = twilioParamString(fields)
  } else if (bodyForm(raw) !== 'json' || !constantTimeEqual(bodySha, sha256(raw).toString('hex'))) {
    // A JSON body is signed through the bodySHA256 parameter of the URL; a form body never is.
    return rejected('no_matching_signature')
  }
  let match = false
  for (const token of tokens) {
    for (const candidate of twilioUrlCandidates(url)) {
      if (matchesAny(hmac('sha1', token, candidate, signedParams), [signature])) match = true
    }
  }
  return match ? verified : rejected('no_matching_signature')
}

/** The `bodySHA256` query parameter of the signed URL, or undefined (a form-encoded request). */
function bodySha256Of (url: string): string | undefined {
  const query = url.indexOf('?')
  if (query === -1) return undefined
  return new URLSearchParams(url.slice(query + 1).split('#')[0]).get('bodySHA256') ?? undefined
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

/** scheme, user info, host, `:port` or '', the rest: the URL's own characters, not normalised. */
function splitUrl (url: string): { scheme: string, userInfo: string, host: string, port: string, rest: string } | undefined {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)/i.exec(url)
  if (match === null) return undefined
  const [prefix, scheme, authority] = match
  const userInfoEnd = authority.lastIndexOf('@')
  const hostAndPort = authority.slice(userInfoEnd + 1)
  const portStart = hostAndPort.indexOf(':', hostAndPort.lastIndexOf(']') + 1)
  return {
    scheme,
    userInfo: authority.slice(0, userInfoEnd + 1),
    host: portStart === -1 ? hostAndPort : hostAndPort.slice(0, portStart),
    port: portStart === -1 ? '' : hostAndPort.slice(portStart),
    rest: url.slice(prefix.length)
  }
}

/** Without any port; with the URL's own port, or the scheme's default when it has none. */
function withoutAndWithPort (url: string): string[] {
  const parts = splitUrl(url)
  if (parts === undefined) return [url]
  const { scheme, userInfo, host, port, rest } = parts
  const withPort = port !== '' ? url : scheme + userInfo + host + (scheme.toLowerCase() === 'https://' ? ':443' : ':80') + rest
  return [scheme + userInfo + host + rest, withPort]
}

/** The query string re-encoded as Node's legacy `querystring` does (some Twilio back ends signed that). */
function withLegacyQuerystring (url: string): string {
  const query = url.indexOf('?')
  if (query === -1 || query === url.length - 1) return url
  return url.slice(0, query + 1) + stringifyQuery(parseQuery(url.slice(query + 1)))
}

/** Every form of `url` twilio-node's validateRequest accepts, each once. */
export function twilioUrlCandidates (url: string): string[] {
  const candidates = withoutAndWithPort(url)
  let normalized: string | undefined
  try {
    normalized = new URL(url).toString()
  } catch {}
  if (normalized !== undefined) {
    const forms = withoutAndWithPort(normalized)
    candidates.push(...forms, ...forms.map(withLegacyQuerystring))
  }
  return [...new Set(candidates)]
}

export function signTwilioRequest (raw: Buffer, token: string, url: string): string {
  const params = bodySha256Of(url) === undefined ? twilioParamString(formFields(raw)) : ''
  return hmac('sha1', token, url, params).toString('base64')
}

type TwilioEvent = Record<string, unknown>
const text = (value: unknown): string | undefined => typeof value === 'string' && value !== '' ? value : undefined

/** The parameters a key is made of: each at most once in a delivery. */
const KEY_PARAMETERS = ['MessageSid', 'SmsSid', 'MessageStatus', 'SmsStatus', 'CallSid', 'CallStatus', 'SequenceNumber'] as const
/** A Twilio SID: two capital letters and 32 hex digits (SM…, MM…, CA…). */
const SID = /^[A-Z]{2}[0-9a-f]{32}$/

/**
 * What the signature covers: for a form body, its parameters sorted and joined (twilioParamString), so
 * that a body re-ordered, with a repeated pair or an empty `&=` appended (all of which verify with the
 * captured signature) is the same content; a JSON body is signed byte for byte (bodySHA256).
 */
export function twilioSignedContent (raw: Buffer, form: boolean): Buffer {
  return form ? Buffer.from(twilioParamString(formFields(raw))) : raw
}

/**
 * The event's key, from the signed parameters only: `MessageSid:MessageStatus`; for a call,
 * `CallSid:CallStatus:SequenceNumber` (status callback events are numbered), else
 * `CallSid:CallStatus:` and the hash of the signed content (a call's `<Gather>` results share its SID
 * and status: each is its own event, a retry of one is the same). A key parameter sent twice, or a SID
 * that is not one (a body re-split so that the signed string is unchanged), is refused: the key would
 * otherwise fall back to the unsigned idempotency token, and a capture could make new runs.
 */
export function twilioIdentity (event: TwilioEvent, headers: IncomingHttpHeaders, raw: Buffer): Identity {
  for (const name of KEY_PARAMETERS) {
    if (Array.isArray(event[name])) return { idempotencyKey: undefined, refuse: 'ambiguous_event_id' }
  }
  for (const name of ['MessageSid', 'SmsSid', 'CallSid']) {
    if (event[name] !== undefined && (typeof event[name] !== 'string' || !SID.test(event[name]))) return { idempotencyKey: undefined, refuse: 'malformed_event_id' }
  }
  const messageStatus = text(event.MessageStatus) ?? text(event.SmsStatus)
  const callStatus = text(event.CallStatus)
  const sid = text(event.MessageSid) ?? text(event.SmsSid)
  const callSid = text(event.CallSid)
  let signed: string | undefined
  if (sid !== undefined && messageStatus !== undefined) {
    signed = `${sid}:${messageStatus}`
  } else if (callSid !== undefined && callStatus !== undefined) {
    const sequence = text(event.SequenceNumber)
    signed = `${callSid}:${callStatus}:${sequence ?? sha256(twilioSignedContent(raw, bodyForm(raw) === 'form')).toString('hex').slice(0, 32)}`
  }
  return {
    idempotencyKey: signed ?? headerValue(headers['i-twilio-idempotency-token']),
    eventType: messageStatus !== undefined ? `message.${messageStatus}` : callStatus !== undefined ? `call.${callStatus}` : undefined
  }
}

export default defineProvider<TwilioEvent>({
  name: 'twilio',
  secretEnv: 'TWILIO_AUTH_TOKEN',
  signatureHeaders: ['x-twilio-signature'],
  contentTypes: ['application/x-www-form-urlencoded', 'application/json'],
  replayGuard: 'body',
  verify: (raw, headers, tokens, _now, { url }) => verifyTwilioSignature(raw, headerValue(headers['x-twilio-signature']), url, tokens),
  signedContent: twilioSignedContent,
  identify: twilioIdentity,
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
