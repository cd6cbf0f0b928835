import t from 'tap'
import Stripe from 'stripe'
import { verifyStripeSignature, signStripePayload } from '../src/providers/stripe.js'
import { constantTimeEqual, hmac, checkTimestamp, decodeDigest } from '../src/signatures.js'
import { STRIPE_SECRET, stripeSignature } from './helper.js'

const stripe = new Stripe('sk_test_hookgate')
const now = Math.floor(Date.now() / 1000)
const body = JSON.stringify({ id: 'evt_1', type: 'charge.succeeded' })
const raw = Buffer.from(body)
const verify = (header: string | undefined, secrets = [STRIPE_SECRET], payload: Buffer = raw, at = now) =>
  verifyStripeSignature(payload, header, secrets, at, 300)

t.test('the published HMAC vector', async t => {
  const payload = JSON.stringify({ obj1: 'hello', obj2: 'world' })
  t.equal(hmac('sha256', 'test_secret', payload).toString('hex'), 'bebb1a643997f419b315ddba19e6f5411e1ce7f810ba6d3617ce72823092f363')
})

t.test('a header made by the Stripe SDK verifies', async t => {
  t.same(verify(stripeSignature(body)), { ok: true })
  t.same(verify(stripeSignature(body, { timestamp: now - 299 })), { ok: true }, 'just inside the tolerance')
})

t.test('what `npm run send` signs is accepted by the Stripe SDK itself', async t => {
  const header = signStripePayload(raw, STRIPE_SECRET, now)
  const event = stripe.webhooks.constructEvent(body, header, STRIPE_SECRET)
  t.equal(event.id, 'evt_1')
})

t.test('any v1 may match: rolled secrets and several signatures', async t => {
  const old = 'whsec_old_secret'
  const header = stripeSignature(body, { secret: old, timestamp: now })
  t.same(verify(header, [STRIPE_SECRET, old]), { ok: true }, 'the old secret still accepted while rotating')
  t.same(verify(header, [STRIPE_SECRET]), { ok: false, reason: 'no_matching_signature' }, 'until it is removed')
  const second = hmac('sha256', STRIPE_SECRET, `${now}.`, raw).toString('hex')
  t.same(verify(`${header},v1=${second}`), { ok: true }, 'one v1 per active secret, the second matches')
  t.same(verify(`${header},v0=abc,v1=${second}`), { ok: true }, 'v0 and unknown schemes are ignored')
  // stripe-node compares every v1 as a string: one it cannot decode simply matches nothing.
  t.same(verify(`t=${now},v1=not-hex,v1=${second}`), { ok: true }, 'an undecodable v1 beside a matching one is skipped')
  t.same(verify(`${stripeSignature(body, { timestamp: now })},v1=${'z'.repeat(64)}`), { ok: true }, 'a matching v1 followed by an undecodable one')
  t.same(verify(`t=${now},v1=not-hex`), { ok: false, reason: 'no_matching_signature' }, 'only undecodable: no match, as stripe-node says')
})

t.test('refusals carry a reason and never pass', async t => {
  const good = stripeSignature(body, { timestamp: now })
  const signature = good.split('v1=')[1]
  const cases: Array<[string, string | undefined, string, Buffer<ArrayBufferLike>?]> = [
    ['missing header', undefined, 'missing_signature_header'],
    ['empty header', '', 'missing_signature_header'],
    ['garbage header', 'garbage', 'malformed_signature_header'],
    ['wrong secret', stripeSignature(body, { secret: 'whsec_wrong' }), 'no_matching_signature'],
    ['body changed after signing', good, 'no_matching_signature', Buffer.from(body.replace('evt_1', 'evt_2'))],
    ['signature for another payload', stripeSignature('{"id":"evt_other"}'), 'no_matching_signature'],
    ['timestamp too old', stripeSignature(body, { timestamp: now - 301 }), 'timestamp_too_old'],
    ['timestamp in the future', stripeSignature(body, { timestamp: now + 301 }), 'timestamp_in_future'],
    ['no timestamp', `v1=${signature}`, 'missing_timestamp'],
    ['timestamp not a number', `t=12ab,v1=${signature}`, 'malformed_signature_header'],
    ['two timestamps', `t=${now},t=${now},v1=${signature}`, 'malformed_signature_header'],
    ['truncated hex', `t=${now},v1=${signature.slice(0, 62)}`, 'no_matching_signature'],
    ['odd-length hex', `t=${now},v1=${signature.slice(0, 63)}`, 'no_matching_signature'],
    ['not hex', `t=${now},v1=${'z'.repeat(64)}`, 'no_matching_signature'],
    ['empty v1', `t=${now},v1=`, 'no_matching_signature'],
    ['only a v0 signature', `t=${now},v0=${signature}`, 'unknown_key_version'],
    ['no signature at all', `t=${now}`, 'malformed_signature_header'],
    ['item without =', `t=${now},${signature}`, 'malformed_signature_header'],
    ['oversized header', `t=${now},v1=${signature},${'v9=0,'.repeat(4000)}`, 'malformed_signature_header'],
    ['non-ASCII', `t=${now},v1=${signature.slice(0, 63)}é`, 'no_matching_signature'],
    ['no secret configured', good, 'no_matching_signature']
  ]
  for (const [name, header, reason, payload] of cases) {
    const secrets = name === 'no secret configured' ? [] : [STRIPE_SECRET]
    t.same(verify(header, secrets, payload ?? raw), { ok: false, reason }, name)
  }
})

t.test('mixed-case hex is the same signature', async t => {
  const [ts, signature] = stripeSignature(body, { timestamp: now }).split(',v1=')
  t.same(verify(`${ts},v1=${signature.toUpperCase()}`), { ok: true })
})

t.test('a pretty-printed payload with non-ASCII characters verifies on its exact bytes', async t => {
  const pretty = JSON.stringify({ id: 'evt_ü', description: 'Café — 東京 💳' }, null, 2)
  t.same(verify(stripeSignature(pretty), [STRIPE_SECRET], Buffer.from(pretty)), { ok: true })
  const reserialised = Buffer.from(JSON.stringify(JSON.parse(pretty)))
  t.same(verify(stripeSignature(pretty), [STRIPE_SECRET], reserialised), { ok: false, reason: 'no_matching_signature' },
    're-serialised JSON is not what was signed')
})

t.test('building blocks', async t => {
  t.ok(constantTimeEqual('abc', 'abc'))
  t.notOk(constantTimeEqual('abc', 'abcd'), 'different lengths compare false without throwing')
  t.notOk(constantTimeEqual(Buffer.from('a'), Buffer.alloc(0)))
  t.equal(decodeDigest('0a0B', 'hex', 2)?.toString('hex'), '0a0b')
  t.equal(decodeDigest('0a0', 'hex', 2), undefined)
  t.same(checkTimestamp('', now, 300), { ok: false, reason: 'missing_timestamp' })
  t.same(checkTimestamp('1234567890123', now, 300), { ok: false, reason: 'malformed_signature_header' })
})
