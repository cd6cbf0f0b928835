import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import tap from 'tap'
import pg from 'pg'
import Stripe from 'stripe'
import type { FastifyInstance } from 'fastify'
import { loadConfig } from '../src/config.js'
import { buildApp } from '../src/app.js'
import { startEmbeddedPostgres } from '../src/db/embedded.js'
import { SENSITIVE_HEADERS } from '../src/redact.js'
import { SHARED_POSTGRES_STATE } from './setup/state.mjs'

type Test = Pick<typeof tap, 'teardown'>

export const STRIPE_SECRET = 'whsec_test_secret_for_hookgate_tests_0123456789'
const stripe = new Stripe('sk_test_hookgate')

/** A Stripe-Signature header made by Stripe's own SDK. */
export function stripeSignature (payload: string, options: { secret?: string, timestamp?: number } = {}): string {
  return stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? STRIPE_SECRET,
    ...(options.timestamp === undefined ? {} : { timestamp: options.timestamp })
  })
}

export function stripeEvent (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `evt_${randomBytes(12).toString('hex')}`,
    object: 'event',
    type: 'payment_intent.succeeded',
    created: Math.floor(Date.now() / 1000),
    data: { object: { id: 'pi_123', object: 'payment_intent', amount: 2000, currency: 'usd' } },
    ...overrides
  }
}

/** A Stripe delivery as app.inject() takes it, signed by the Stripe SDK unless told otherwise. */
export function stripeDelivery (payload: string | Record<string, unknown>, headers: Record<string, string> = {}) {
  const body = typeof payload === 'string' ? payload : JSON.stringify(payload)
  return {
    method: 'POST' as const,
    url: '/webhooks/stripe',
    headers: { 'content-type': 'application/json', 'stripe-signature': stripeSignature(body), ...headers },
    payload: body
  }
}

// --- a real PostgreSQL for every test -----------------------------------------------------------

let embeddedServer: Promise<string> | undefined

/**
 * The server to create test databases on: DATABASE_URL; else the run's shared embedded cluster
 * (started by tap's `before`, test/setup/before.mjs); else, for a file run on its own without it,
 * an embedded cluster for this file.
 */
function serverUrl (): Promise<string> {
  if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '') return Promise.resolve(process.env.DATABASE_URL)
  if (existsSync(SHARED_POSTGRES_STATE)) return Promise.resolve((JSON.parse(readFileSync(SHARED_POSTGRES_STATE, 'utf8')) as { url: string }).url)
  embeddedServer ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hookgate-test-pg-'))
    const quiet = { info: () => {}, debug: () => {}, warn: () => {} }
    const server = await startEmbeddedPostgres(dir, quiet, ['-c', 'fsync=off'])
    tap.teardown(async () => {
      await server.stop()
      await rm(dir, { recursive: true, force: true })
    })
    return server.connectionString
  })()
  return embeddedServer
}

/** A new, empty database on the test server, dropped when `t` ends. */
export async function freshDatabase (t: Test): Promise<string> {
  const server = await serverUrl()
  const name = `hookgate_test_${process.pid}_${randomBytes(4).toString('hex')}`
  await withClient(server, async client => { await client.query(`CREATE DATABASE ${name}`) })
  t.teardown(async () => {
    await withClient(server, async client => { await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) })
  })
  const url = new URL(server)
  url.pathname = `/${name}`
  return url.toString()
}

export async function withClient<T> (connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

export async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hookgate-test-'))
  t.teardown(async () => { await rm(dir, { recursive: true, force: true }) })
  return dir
}

// --- the log scan: no secret or signature in any log line of a whole test file ----------------------

const logScan = { text: [] as string[], secrets: new Set<string>(), signatures: new Set<string>() }
process.on('exit', () => {
  if (logScan.text.length === 0) return
  const all = logScan.text.join('')
  const leaks = [...logScan.secrets, ...logScan.signatures].filter(value => all.includes(value))
  if (leaks.length > 0) {
    process.stderr.write(`log scan: ${leaks.length} secret(s) or signature(s) found in the logs, e.g. ${leaks[0].slice(0, 6)}…\n`)
    process.exitCode = 1
  } else if (process.env.LOG_SCAN_REPORT !== undefined) {
    process.stderr.write(`log scan: ${all.length} bytes of logs, ${logScan.secrets.size} secrets and ${logScan.signatures.size} signatures looked for, none found\n`)
  }
})

// --- the app --------------------------------------------------------------------------------------

export interface Built {
  app: FastifyInstance
  /** Every log line the app wrote, parsed. */
  logs: Array<Record<string, unknown>>
  databaseUrl: string
}

/**
 * The real gateway on a fresh database, closed when `t` ends. `env` adds to or overrides the
 * test environment (a Stripe secret, the test database, a temp DATA_DIR, ROLE=ingest).
 */
export async function build (t: Test, env: Record<string, string | undefined> = {}): Promise<Built> {
  const databaseUrl = env.DATABASE_URL ?? await freshDatabase(t)
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    DATA_DIR: await tempDir(t),
    STRIPE_WEBHOOK_SECRET: STRIPE_SECRET,
    // Receive only, unless a test is about processing: what ingest stored stays as it was stored.
    ROLE: 'ingest',
    ...env,
    DATABASE_URL: databaseUrl
  })
  const logs: Array<Record<string, unknown>> = []
  const logStream = new Writable({
    write (chunk: Buffer, _encoding, done) {
      const text = chunk.toString()
      logScan.text.push(text)
      for (const line of text.split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  for (const [name, value] of Object.entries(config.env)) {
    if (/SECRET|TOKEN|PASSWORD|_KEYS?$/.test(name)) for (const secret of (value ?? '').split(/[\s,"[\]]+/)) if (secret.length >= 8) logScan.secrets.add(secret)
  }
  const app = buildApp(config, { logStream })
  // Every signature or credential that reaches the gateway is looked for in the logs at exit.
  app.addHook('onRequest', async request => {
    for (const name of [...SENSITIVE_HEADERS, ...[...app.providers.definitions.values()].flatMap(d => d.signatureHeaders)]) {
      const value = request.headers[name]
      for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
        for (const part of one.split(/[\s,;=]+/)) if (part.length >= 16) logScan.signatures.add(part)
      }
    }
  })
  t.teardown(async () => { await app.close() })
  await app.ready()
  return { app, logs, databaseUrl }
}
