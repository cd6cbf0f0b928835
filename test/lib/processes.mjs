// Helpers shared by the scripts that run hookgate as processes: test/balancer, test/faults, bench.
import { createServer } from 'node:net'
import pg from 'pg'

/**
 * One query on a fresh connection.
 * @param {string} connectionString
 * @param {string} text
 * @param {unknown[]} [values]
 * @returns {Promise<import('pg').QueryResult<any>>}
 */
export async function query (connectionString, text, values) {
  const client = new pg.Client({ connectionString })
  await client.connect()
  try { return await client.query(text, values) } finally { await client.end() }
}

/**
 * A TCP port free on loopback right now.
 * @returns {Promise<number>}
 */
export async function freePort () {
  return await new Promise(resolve => {
    const s = createServer()
    s.listen(0, '127.0.0.1', () => { const { port } = /** @type {import('node:net').AddressInfo} */ (s.address()); s.close(() => resolve(port)) })
  })
}

/**
 * Waits until `url` answers 2xx (30 s at most).
 * @param {string} url
 */
export async function waitFor (url) {
  for (let i = 0; i < 300; i++) {
    try { if ((await fetch(url)).ok) return } catch {}
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`not ready: ${url}`)
}
