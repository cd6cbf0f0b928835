// A drop-in provider: copy this file into PROVIDERS_DIR as <name>.mjs, edit it, restart hookgate.
// It receives events at POST /webhooks/<name>, behind the same signature hook, storage and audit as
// the built-in providers. No import from hookgate is needed: the function gets `kit`, hookgate's
// verification schemes and constant-time primitives (hmacScheme, apiKeyScheme, standardWebhooks,
// verifyTimestampedHeader, constantTimeEqual, hmac, checkTimestamp, verified, rejected, ...).
//
// This example: "Acme" signs `${timestamp}.${rawBody}` with HMAC-SHA256, hex, sent as
//   X-Acme-Signature: sha256=<hex>      X-Acme-Timestamp: <unix seconds>
// and puts its event id in `id`, its type in `type`.

export default (kit) => {
  const signature = kit.hmacScheme({
    algorithm: 'sha256',
    header: 'x-acme-signature',
    prefix: 'sha256=',
    encoding: 'hex',
    signedContent: '{timestamp}.{body}',
    timestampHeader: 'x-acme-timestamp'
  })

  return {
    name: 'acme',                              // route /webhooks/acme, ops.runs.provider
    secretEnv: 'ACME_WEBHOOK_SECRET',          // several while rotating: new,old (or a JSON array)
    toleranceSeconds: 300,                     // ACME_TOLERANCE_SECONDS overrides it
    signatureHeaders: ['x-acme-signature'],    // never stored, never logged
    // Pure: raw bytes + headers + secrets + clock → kit.verified or kit.rejected(reason).
    verify: (raw, headers, secrets, now, { toleranceSeconds }) => signature.verify(raw, headers, secrets, now, toleranceSeconds),
    // The sender's own event id: never invent one (no id → 400).
    identify: (event, headers) => ({ idempotencyKey: event.id, eventType: event.type }),
    // Optional: lets `npm run send -- acme` post a correctly signed test event.
    sign: (raw, secret, now) => signature.sign(raw, secret, now),
    sampleEvent: () => ({ id: `evt_${Date.now()}`, type: 'thing.happened', data: { answer: 42 } })
  }
}
