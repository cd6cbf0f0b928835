// npm run bench, "one loopback destination": an internal service that verifies hookgate's Standard
// Webhooks signature (the official library) on the exact bytes and answers 200.
import Fastify from 'fastify'
import { Webhook } from 'standardwebhooks'

const webhook = new Webhook(process.env.SINK_SECRET)
let verified = 0
let refused = 0
const app = Fastify({ logger: false, bodyLimit: 1048576 })
app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => { done(null, body) })
app.post('/hook', async (request, reply) => {
  try {
    webhook.verify(/** @type {string} */ (request.body), /** @type {Record<string, string>} */ (request.headers))
    verified++
    return { ok: true }
  } catch {
    refused++
    return await reply.code(401).send({ ok: false })
  }
})
app.get('/counts', async () => ({ verified, refused }))
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
process.send?.('listening')
