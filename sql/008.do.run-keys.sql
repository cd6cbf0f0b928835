-- Data lifecycle, step 1 of 4 (008–011): the idempotency keys get a narrow table of their own.
-- ops.runs becomes partitioned by time (011), and a partitioned table cannot hold a UNIQUE
-- (provider, idempotency_key) across its partitions; ops.run_keys is the arbiter of ingest instead,
-- and it outlives the runs: a key is kept DEDUP_DAYS (src/retention.ts), so that a sender's retry of
-- a run that retention removed is still a duplicate. The replay guard (004) moves with it.
-- Filled from the existing runs without blocking ingest (it only reads ops.runs); 011 adds the keys of
-- runs stored meanwhile, under its lock.
CREATE TABLE ops.run_keys (
  provider        text        NOT NULL,
  idempotency_key text        NOT NULL,
  run_id          uuid        NOT NULL DEFAULT ops.uuid_v7(),
  body_sha256     bytea       NOT NULL,
  replay_sha256   bytea,
  received_at     timestamptz NOT NULL DEFAULT now()
);

INSERT INTO ops.run_keys (provider, idempotency_key, run_id, body_sha256, replay_sha256, received_at)
SELECT provider, idempotency_key, run_id, body_sha256, replay_sha256, received_at FROM ops.runs;

ALTER TABLE ops.run_keys ADD CONSTRAINT run_keys_pkey PRIMARY KEY (provider, idempotency_key);
CREATE UNIQUE INDEX run_keys_replay_idx ON ops.run_keys (provider, replay_sha256) WHERE replay_sha256 IS NOT NULL;
CREATE INDEX run_keys_received_at_idx ON ops.run_keys (received_at);
COMMENT ON TABLE ops.run_keys IS 'Idempotency keys (and replay hashes) of the runs of the last DEDUP_DAYS: what makes a delivery a duplicate.';
