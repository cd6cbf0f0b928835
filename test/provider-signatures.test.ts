import t from 'tap'
import fc from 'fast-check'
import type { IncomingHttpHeaders } from 'node:http'
import type { ProviderDefinition } from '../src/provider.js'
import { githubSignature } from '../src/providers/github.js'
import { shopifySignature } from '../src/providers/shopify.js'
import { slackSignature } from '../src/providers/slack.js'
import { verifyPaddleSignature } from '../src/providers/paddle.js'
import { twilioUrlCandidates, verifyTwilioSignature } from '../src/providers/twilio.js'
import { verifyStandardWebhook } from '../src/schemes/standard-webhooks.js'
import { compileSignedContent, hmacScheme } from '../src/schemes/hmac.js'
import { decodeDigest } from '../src/signatures.js'
import { configuredProviders } from '../src/extra-providers.js'
import { GENERIC_PROVIDER } from './senders.js'
import { builtInProviders } from './built-in-providers.js'

/** Vectors the providers publish (their documentation and reference libraries), each checked at the moment it was signed. */
t.test('published vectors', async t => {
  const raw = (text: string) => Buffer.from(text)
  t.same(githubSignature.verify(raw('Hello, World!'), { 'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17' }, ["It's a Secret to Everybody"], 0, { toleranceSeconds: 0 }), { ok: true }, 'GitHub 1')
  t.same(githubSignature.verify(raw('{"foo":"bar"}'), { 'x-hub-signature-256': 'sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3' }, ['mysecret'], 0, { toleranceSeconds: 0 }), { ok: true }, 'GitHub 2')
  t.same(verifyStandardWebhook(raw('{"test": 2432232314}'), {
    'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    'webhook-timestamp': '1614265330',
    'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
  }, ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], 1614265330, 300), { ok: true }, 'Standard Webhooks')
  t.same(shopifySignature.verify(raw('{"foo": "bar"}'), { 'x-shopify-hmac-sha256': 'B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=' }, ['test_secret_key'], 0, { toleranceSeconds: 0 }), { ok: true }, 'Shopify')
  const slackBody = 'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c'
  t.same(slackSignature.verify(raw(slackBody), {
    'x-slack-signature': 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503',
    'x-slack-request-timestamp': '1531420618'
  }, ['8f742231b10e8888abcd99yyyzzz85a5'], 1531420618, { toleranceSeconds: 300 }), { ok: true }, 'Slack')
  t.same(verifyPaddleSignature(raw('{"data": ["1", "2"]}'), 'ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9', ['VALID_SECRET'], 1698796800, 5), { ok: true }, 'Paddle')
  t.same(verifyPaddleSignature(raw('{"data": ["1", "2"]}'), 'ts=1698796800;h1=a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9', ['VALID_SECRET'], 1698796806, 5), { ok: false, reason: 'timestamp_too_old' }, 'Paddle, 6 s later')
  const twilioParams = 'CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212'
  t.same(verifyTwilioSignature(raw(twilioParams), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'https://mycompany.com/myapp.php?foo=1&bar=2', ['12345']), { ok: true }, 'Twilio')
  t.same(verifyTwilioSignature(raw(twilioParams), 'RSOYDt4T1cUTdK1PDd93/VVr8B8=', 'https://mycompany.com/myapp.php?foo=1&bar=3', ['12345']), { ok: false, reason: 'no_matching_signature' }, 'Twilio, another URL')
})

t.test('scheme building blocks', async t => {
  t.throws(() => compileSignedContent('{timestamp}.{nope}'), /unknown placeholder \{nope\}/)
  t.throws(() => compileSignedContent('{timestamp}'), /must contain \{body\} exactly once/)
  t.throws(() => hmacScheme({ algorithm: 'sha256', header: 'x', encoding: 'hex', signedContent: '{timestamp}.{body}' }), /needs a timestampHeader/)
  t.throws(() => hmacScheme({ algorithm: 'sha256', header: 'x', encoding: 'hex', signedContent: '{id}.{body}' }), /needs an idHeader/)
  t.equal(decodeDigest('AAAA', 'base64', 3)?.length, 3)
  t.equal(decodeDigest('AAA=', 'base64', 3), undefined, 'non-canonical base64 is refused')
  t.equal(decodeDigest('AA A', 'base64', 3), undefined)
  // As twilio-node tries them: without any port, with the URL's own port (never replaced by the default).
  t.same(twilioUrlCandidates('https://user@h.example:8443/x?y=1'), ['https://user@h.example/x?y=1', 'https://user@h.example:8443/x?y=1'])
  t.same(twilioUrlCandidates('http://localhost:3000/webhooks/twilio'), ['http://localhost/webhooks/twilio', 'http://localhost:3000/webhooks/twilio'])
  t.same(twilioUrlCandidates('https://h.example/x'), ['https://h.example/x', 'https://h.example:443/x'])
  t.same(twilioUrlCandidates("https://h.example/x?q=it's"), ["https://h.example/x?q=it's", "https://h.example:443/x?q=it's", 'https://h.example/x?q=it%27s', 'https://h.example:443/x?q=it%27s'])
  t.same(twilioUrlCandidates('not a url'), ['not a url'])
})

const [generic] = configuredProviders([GENERIC_PROVIDER])
// Every file of src/providers/ (a new one is fuzzed without being listed), and a no-code provider.
const definitions: Array<ProviderDefinition> = [...(await builtInProviders()).map(({ plugin }) => plugin), generic].map(plugin => plugin.provider)
const URL_ = 'https://hooks.example.com/webhooks/x'
const NOW = 1_700_000_000

/** What the sender sends for `raw`, as Node would hand the headers to the verifier. */
function signedHeaders (definition: ProviderDefinition, raw: Buffer, secret: string): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = { 'content-type': definition.contentTypes?.[0] ?? 'application/json' }
  for (const [name, value] of Object.entries(definition.sign!(raw, secret, NOW, URL_))) headers[name.toLowerCase()] = value
  return headers
}

/** Linear signs a timestamp inside the body, so its bodies must carry one; every other provider signs any bytes. */
function bodyFor (definition: ProviderDefinition, bytes: Uint8Array): Buffer {
  if (definition.name === 'linear') return Buffer.from(JSON.stringify({ webhookTimestamp: NOW * 1000, data: Buffer.from(bytes).toString('base64') }))
  if (definition.name === 'twilio') return Buffer.from(new URLSearchParams({ Body: Buffer.from(bytes).toString('latin1') }).toString())
  return Buffer.from(bytes)
}

const secrets = fc.string({ minLength: 1, maxLength: 64 }).filter(s => s.trim() === s && s !== '')

// FUZZ=n multiplies the runs (npm run test:faults fuzzes longer than npm test).
const FUZZ = Math.max(1, Number(process.env.FUZZ ?? 1))

t.test('property: what a provider signs, it verifies; any single-byte change is refused', async t => {
  for (const definition of definitions) {
    const secretArb = definition.name === 'standard-webhooks'
      ? fc.uint8Array({ minLength: 16, maxLength: 48 }).map(bytes => `whsec_${Buffer.from(bytes).toString('base64')}`)
      : secrets
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), secretArb, fc.nat(), (bytes, secret, position) => {
      const raw = bodyFor(definition, bytes)
      const headers = signedHeaders(definition, raw, secret)
      const context = { toleranceSeconds: 300, url: URL_ }
      if (!definition.verify(raw, headers, [secret], NOW, context).ok) return false
      if (definition.name !== 'sepay' && raw.length > 0) {
        const changed = Buffer.from(raw)
        changed[position % changed.length] ^= 0x01
        if (definition.verify(changed, headers, [secret], NOW, context).ok) return false
      }
      const signatureHeader = definition.signatureHeaders.find(name => headers[name] !== undefined)!
      const signature = String(headers[signatureHeader])
      const at = position % signature.length
      const flipped = signature.slice(0, at) + String.fromCharCode(signature.charCodeAt(at) ^ 0x01) + signature.slice(at + 1)
      return !definition.verify(raw, { ...headers, [signatureHeader]: flipped }, [secret], NOW, context).ok
    }), { numRuns: 150 * FUZZ })
    t.pass(`${definition.name}: sign → verify, body and signature tampering refused`)
  }
})

t.test('property: arbitrary headers never throw and never pass without the secret', async t => {
  const anyHeader = fc.oneof(fc.string({ maxLength: 300 }), fc.constant(undefined), fc.array(fc.string({ maxLength: 40 }), { maxLength: 3 }))
  for (const definition of definitions) {
    const names = [...definition.signatureHeaders, 'webhook-id', 'webhook-timestamp', 'svix-id', 'svix-timestamp', 'svix-signature', 'x-slack-request-timestamp', 'content-type']
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), fc.tuple(...names.map(() => anyHeader)), (bytes, values) => {
      const headers: IncomingHttpHeaders = {}
      names.forEach((name, i) => { if (values[i] !== undefined) headers[name] = values[i] })
      const result = definition.verify(Buffer.from(bytes), headers, ['the-real-secret'], NOW, { toleranceSeconds: 300, url: URL_ })
      return !result.ok && typeof result.reason === 'string'
    }), { numRuns: 300 * FUZZ })
    t.pass(`${definition.name}: no throw, no accept`)
  }
})
