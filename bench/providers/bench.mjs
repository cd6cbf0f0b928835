// npm run bench, "a handler that does nothing": Stripe's scheme at /webhooks/bench, with a handler
// for every event type that returns done() at once. Loaded through PROVIDERS_DIR, like a user's file.
const STRIPE = { itemSeparator: ',', timestampKey: 't', signatureKey: 'v1', contentSeparator: '.' }

export default kit => ({
  name: 'bench',
  secretEnv: 'STRIPE_WEBHOOK_SECRET',
  signatureHeaders: ['stripe-signature'],
  verify: (raw, headers, secrets, now, { toleranceSeconds }) =>
    kit.verifyTimestampedHeader(STRIPE, raw, kit.headerValue(headers['stripe-signature']), secrets, now, toleranceSeconds),
  identify: event => ({ idempotencyKey: event.id, eventType: event.type }),
  handlers: { '*': () => kit.done() }
})
