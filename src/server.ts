import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import { loadConfig, type Config } from './config.js'
import { BootError } from './errors.js'
import { buildApp } from './app.js'
import { devSecret, devSecretsFile } from './dev-secrets.js'
import { heapFlag } from './heap.js'
import type { FastifyInstance } from 'fastify'

/** Boot only: configuration, the app, graceful shutdown, listen. */
async function main (): Promise<void> {
  const flag = heapFlag(process.execArgv)
  if (flag !== undefined) setFlagsFromString(flag)
  // `hookgate worker` is ROLE=worker: processing only, no webhook routes.
  const loaded = loadConfig(process.argv[2] === 'worker' ? { ...process.env, ROLE: 'worker' } : process.env)
  // Outside production the console is on from the first boot: an admin token is generated like the
  // providers' secrets (and printed below). Never in production.
  const devAdminToken = loaded.production || loaded.adminToken !== undefined || loaded.role === 'worker' ? undefined : devSecret(loaded.dataDir, 'ADMIN_TOKEN')
  const config: Config = devAdminToken === undefined ? loaded : { ...loaded, adminToken: devAdminToken }
  const app = buildApp(config)
  // The deadline covers the drain and the close; a second signal forces the exit.
  closeWithGrace({ delay: config.drainDelayMs + config.shutdownTimeoutMs }, async ({ signal, err }) => {
    app.draining = true
    if (err !== undefined) {
      app.log.error({ err }, 'shutting down after an error')
    } else if (config.drainDelayMs > 0) {
      app.log.info({ signal, drain_ms: config.drainDelayMs }, 'draining: /readyz answers 503, deliveries still served')
      await new Promise(resolve => setTimeout(resolve, config.drainDelayMs))
    }
    app.log.info({ signal }, 'shutting down: no new connections, finishing in-flight deliveries')
    await app.close()
  })
  await app.listen({ port: config.port, host: config.host })
  printDevelopmentSecrets(app, config, devAdminToken)
}

/** Outside production only: the generated secrets and a command that sends a signed test event. */
function printDevelopmentSecrets (app: FastifyInstance, config: Config, adminToken: string | undefined): void {
  const generated = app.providers.generatedSecrets
  if (generated.size === 0 && adminToken === undefined) return
  const address = app.server.address()
  const origin = typeof address === 'object' && address !== null ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : ''
  const lines = [
    '',
    `hookgate: development secrets (NODE_ENV=${config.nodeEnv}), kept in ${devSecretsFile(config.dataDir)}:`,
    ...[...generated].map(([variable, { secret }]) => `  ${variable}=${secret}`),
    ...(adminToken === undefined ? [] : [`  ADMIN_TOKEN=${adminToken}`, `The operator console: ${origin.replace('0.0.0.0', 'localhost')}/console (sign in with ADMIN_TOKEN)`]),
    'Send a correctly signed test event:',
    ...[...generated.values()].map(({ provider }) => `  npm run send -- ${provider}`),
    'In production, set the real secrets: none is ever generated there.',
    ''
  ]
  process.stderr.write(lines.join('\n') + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`hookgate: ${err instanceof BootError ? err.message : (err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
