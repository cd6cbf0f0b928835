/**
 * Headers that carry credentials or signatures: never stored with a run, never logged.
 * Each provider adds its own signature headers (ProviderDefinition.signatureHeaders) when storing.
 */
export const SENSITIVE_HEADERS: ReadonlySet<string> = new Set([
  'authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key',
  'stripe-signature', 'x-hub-signature', 'x-hub-signature-256', 'webhook-signature', 'svix-signature',
  'x-shopify-hmac-sha256', 'x-slack-signature', 'paddle-signature', 'x-twilio-signature', 'linear-signature'
])

/** Names of values never logged, wherever they appear in a line's own fields, an error or a configuration. */
const SECRET_NAMES = ['secret', 'secrets', 'password', 'token']

/**
 * pino redaction: the headers above wherever a request or headers are serialised, and anything named
 * like a secret at the top of a line, in an error (`err`, its `cause`) or in a configuration (`config`,
 * `config.env`). No path starts with a wildcard: pino would run a wildcard path's redactor on every
 * field of every line (5.2 µs and a dozen allocations for the delivery line, against 1.6 µs without).
 */
export const LOG_REDACT_PATHS = [
  ...[...SENSITIVE_HEADERS].flatMap(name => [`req.headers["${name}"]`, `headers["${name}"]`]),
  ...SECRET_NAMES.flatMap(name => [name, `err.${name}`, `err.cause.${name}`, `config.${name}`]),
  'config.env'
]
