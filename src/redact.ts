/**
 * Headers that carry credentials or signatures: never stored with a run, never logged.
 * Each provider adds its own signature headers (ProviderDefinition.signatureHeaders) when storing.
 */
export const SENSITIVE_HEADERS: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key',
  'stripe-signature', 'x-hub-signature', 'x-hub-signature-256', 'webhook-signature', 'svix-signature',
  'x-shopify-hmac-sha256', 'x-slack-signature', 'paddle-signature', 'x-twilio-signature', 'linear-signature'
])

/** pino redaction: headers above wherever a request is serialised, and anything named like a secret. */
export const LOG_REDACT_PATHS = [
  ...[...SENSITIVE_HEADERS].flatMap(name => [`req.headers["${name}"]`, `headers["${name}"]`]),
  '*.secret', '*.secrets', '*.password', '*.token', 'config.env'
]
