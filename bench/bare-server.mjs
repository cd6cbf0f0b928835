// The ceiling: bare Fastify parsing the same JSON body and answering, no verification, no database.
import Fastify from 'fastify'

const app = Fastify({ logger: false, bodyLimit: 1048576 })
app.post('/webhooks/stripe', async request => ({ status: 'accepted', id: /** @type {{ id?: unknown }} */ (request.body).id }))
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
process.send?.('listening')
