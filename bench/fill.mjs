// Bulk-filled runs for the benchmarks that measure a large ops.runs (npm run bench:growth,
// npm run bench:console): the 1.4 KB Stripe payload of npm run bench, a `received` event per run,
// 98 % completed, 1 % failed, 1 % exception (with its open exception), received over the last n/20 s,
// each in the partition of its day with its key in ops.run_keys, as ingest would have stored it.
import pg from 'pg'
import { template } from './stripe-event.mjs'

const CHUNK = 500_000

const HEADERS = { 'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)', 'content-type': 'application/json; charset=utf-8', accept: '*/*; q=0.5, application/xml', 'cache-control': 'no-cache', host: 'hooks.example.com', 'content-length': '1412' }

/** Fills ops.runs with `n` runs and one `received` event each, in chunks, spread over the last n/20 s. */
export async function fill (databaseUrl, n) {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    // Each run in the partition of the day it was received (its id made at that time), with its key.
    // The partitions of the last 30 days exist whatever n is, as they do under the default retention
    // (RETENTION_DAYS=30): every size is measured with the same layout, only the rows differ.
    await client.query(`SELECT ops.ensure_day_partitions(least(((now() - make_interval(secs => $1::bigint * 0.05)) AT TIME ZONE 'UTC')::date,
      (now() AT TIME ZONE 'UTC')::date - 30), (now() AT TIME ZONE 'UTC')::date)`, [n])
    for (let from = 1; from <= n; from += CHUNK) {
      const to = Math.min(n, from + CHUNK - 1)
      await client.query(`
        WITH ins AS (
          INSERT INTO ops.runs (run_id, provider, idempotency_key, event_type, status, payload, body_sha256, headers, received_at, started_at, completed_at, attempts, last_error)
          SELECT ops.uuid_v7(t.at), 'stripe', 'evt_g_' || i, 'payment_intent.succeeded', s.status,
            jsonb_set($1::jsonb, '{id}', to_jsonb('evt_g_' || i)), sha256(int8send(i)), $2::jsonb,
            t.at, t.at, t.at + interval '20 ms', 1, CASE WHEN s.status = 'completed' THEN NULL ELSE 'generated' END
          FROM generate_series($3::bigint, $4::bigint) AS i,
            LATERAL (SELECT now() - make_interval(secs => ($5::bigint - i) * 0.05) AS at) AS t,
            LATERAL (SELECT CASE i % 100 WHEN 0 THEN 'failed' WHEN 1 THEN 'exception' ELSE 'completed' END AS status) AS s
          RETURNING run_id, idempotency_key, body_sha256, received_at
        ), keys AS (
          INSERT INTO ops.run_keys (provider, idempotency_key, run_id, body_sha256, received_at)
          SELECT 'stripe', idempotency_key, run_id, body_sha256, received_at FROM ins
        )
        INSERT INTO ops.run_events (run_id, type, at, data)
        SELECT run_id, 'received', received_at, '{"request_id": "req-1", "client_ip": "203.0.113.7", "body_bytes": 1412}'::jsonb FROM ins`,
      [JSON.stringify(template), JSON.stringify(HEADERS), from, to, n])
    }
    await client.query("INSERT INTO ops.exceptions (run_id, reason, details) SELECT run_id, 'amount_mismatch', '{}' FROM ops.runs WHERE status = 'exception'")
    await client.query('VACUUM ANALYZE')
    const { rows: [size] } = await client.query(`SELECT
      pg_size_pretty((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('ops.runs'))) AS runs,
      pg_size_pretty((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('ops.run_events'))) AS events,
      pg_size_pretty(pg_total_relation_size('ops.run_keys')) AS keys`)
    return size
  } finally {
    await client.end()
  }
}
