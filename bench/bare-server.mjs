// The ceiling: bare Fastify parsing the same JSON body and answering, no verification, no database.
// With DATABASE_URL: the same, plus one committed insert of the body per request before the answer
// (the floor of any gateway that answers after a commit and commits each delivery alone).
import Fastify from 'fastify'
import pg from 'pg'

const app = Fastify({ logger: false, bodyLimit: 1048576 })
const pool = process.env.DATABASE_URL === undefined ? undefined : new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 })
await pool?.query('CREATE TABLE IF NOT EXISTS floor_http (id bigserial PRIMARY KEY, data jsonb NOT NULL)')
app.post('/webhooks/stripe', async request => {
  const body = /** @type {{ id?: unknown }} */ (request.body)
  await pool?.query({ name: 'floor', text: 'INSERT INTO floor_http (data) VALUES ($1)', values: [body] })
  return { status: 'accepted', id: body.id }
})
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
process.send?.('listening')
