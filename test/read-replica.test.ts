import t from 'tap'
import { migrate } from '../src/db/migrate.js'
import { build, freshDatabase, stripeDelivery, stripeEvent, withClient } from './helper.js'
import { loadConfig } from '../src/config.js'

// DATABASE_READ_URL: the admin API's lists and run pages read from a replica; every decision goes to
// the primary. A second database stands in for the replica: what the API shows says where it read.

const ADMIN_TOKEN = 'admin-token-0123456789abcdef'

t.test('lists and run pages read from DATABASE_READ_URL, replay writes to the primary', async t => {
  const replica = await freshDatabase(t)
  await migrate(replica)
  const onReplica = await withClient(replica, async client => (await client.query(
    "INSERT INTO ops.runs (provider, idempotency_key, payload, body_sha256) VALUES ('stripe', 'evt_on_the_replica', '{}', '\\x00') RETURNING run_id")).rows[0].run_id as string)
  const { app, databaseUrl } = await build(t, { ADMIN_TOKEN, DATABASE_READ_URL: replica })
  t.not(databaseUrl, replica)
  const get = async (url: string) => await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })

  const stored = (await app.inject(stripeDelivery(stripeEvent()))).json()
  t.equal(stored.status, 'accepted', 'deliveries are stored on the primary')
  const listed = (await get('/admin/runs')).json().runs.map((run: { run_id: string }) => run.run_id)
  t.same(listed, [onReplica], 'the list is read from the replica')
  t.equal((await get(`/admin/runs/${onReplica}`)).statusCode, 200, 'and the run page')
  t.equal((await get(`/admin/runs/${stored.run_id as string}`)).statusCode, 404, 'a run the replica has not received yet is not there (replication lag)')
  t.same((await get('/admin/exceptions?status=open')).json().exceptions, [], 'exceptions too')

  const replay = async (runId: string) => await app.inject({ method: 'POST', url: `/admin/runs/${runId}/replay`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload: {} })
  t.equal((await replay(onReplica)).statusCode, 404, 'replay acts on the primary, which has no such run')
  t.equal((await replay(stored.run_id)).statusCode, 202, 'a run of the primary is requeued there')
  const { rows } = await app.pg.query("SELECT count(*)::int AS n FROM ops.run_events WHERE run_id = $1 AND type = 'replay_requested'", [stored.run_id])
  t.equal(rows[0].n, 1, 'the decision is audited on the primary')
})

t.test('DATABASE_READ_URL needs DATABASE_URL: the embedded database has no replica', async t => {
  t.throws(() => loadConfig({ DATABASE_READ_URL: 'postgres://reader@replica/hookgate' }), /DATABASE_READ_URL is a replica of DATABASE_URL/)
  t.equal(loadConfig({ DATABASE_URL: 'postgres://h@primary/hookgate', DATABASE_READ_URL: 'postgres://reader@replica/hookgate' }).databaseReadUrl, 'postgres://reader@replica/hookgate')
})
