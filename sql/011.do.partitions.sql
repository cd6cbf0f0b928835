-- Data lifecycle, step 4 of 4: ops.runs and ops.run_events partitioned, so that retention drops a
-- day of runs as a table instead of deleting its rows (src/retention.ts, docs/operations.md).
--
--   ops.runs        LIST (tier)
--     runs_live       'live'   RANGE (run_id): a partition per UTC day, runs_pYYYYMMDD
--     runs_held       'held'   runs that retention keeps past their day: to process, failed, under review
--     runs_legacy     'legacy' the table as it was before this migration, dropped whole when it expires
--   ops.run_events  LIST (tier)
--     run_events_live   'live'   RANGE (run_id), the same days: a run's history lives with its run
--     run_events_held   'held'   the history of held runs
--     run_events_audit  'audit'  RANGE (at), a partition per day: deliveries without a run (refusals,
--                                handshakes) and duplicates of runs retention removed
--     run_events_legacy 'legacy'
--
-- Run ids are UUID version 7 (006): their first 48 bits are the millisecond the run was stored, so a
-- day of runs is a range of ids and a run's partition follows from its id. The keys that make ingest
-- idempotent are in ops.run_keys (008). Foreign keys to ops.runs go: a partitioned table's unique
-- keys must hold its partition key (tier), and a dropped day would have to cascade row by row.
-- Ingest waits for this migration's lock: the statements below read no table whole.
LOCK TABLE ops.runs, ops.run_events, ops.exceptions, ops.run_keys IN ACCESS EXCLUSIVE MODE;

-- The keys of runs stored while 008–010 ran.
INSERT INTO ops.run_keys (provider, idempotency_key, run_id, body_sha256, replay_sha256, received_at)
SELECT provider, idempotency_key, run_id, body_sha256, replay_sha256, received_at FROM ops.runs
WHERE received_at >= coalesce((SELECT max(received_at) FROM ops.run_keys), '-infinity') - interval '10 minutes'
ON CONFLICT DO NOTHING;

ALTER TABLE ops.run_events DROP CONSTRAINT run_events_run_id_fkey;
ALTER TABLE ops.exceptions DROP CONSTRAINT exceptions_run_id_fkey;

ALTER TABLE ops.runs RENAME TO runs_legacy;
ALTER INDEX ops.runs_pkey RENAME TO runs_legacy_pkey;
ALTER INDEX ops.runs_provider_idempotency_key_key RENAME TO runs_legacy_key_key;
ALTER INDEX ops.runs_replay_idx RENAME TO runs_legacy_replay_idx;
ALTER INDEX ops.runs_status_idx RENAME TO runs_legacy_status_idx;
ALTER INDEX ops.runs_due_idx RENAME TO runs_legacy_due_idx;
ALTER INDEX ops.runs_leased_idx RENAME TO runs_legacy_leased_idx;
ALTER INDEX ops.runs_listing_idx RENAME TO runs_legacy_listing_idx;
ALTER TABLE ops.run_events RENAME TO run_events_legacy;
ALTER INDEX ops.run_events_pkey RENAME TO run_events_legacy_pkey;
ALTER INDEX ops.run_events_run_id_idx RENAME TO run_events_legacy_run_id_idx;
ALTER INDEX ops.run_events_rejected_idx RENAME TO run_events_legacy_rejected_idx;
ALTER INDEX ops.run_events_repeats_idx RENAME TO run_events_legacy_repeats_idx;

-- A partitioned table has no identity column before PostgreSQL 17: a sequence, going on from the old one.
CREATE SEQUENCE ops.run_event_ids AS bigint;
SELECT setval('ops.run_event_ids', greatest(
  nextval(pg_get_serial_sequence('ops.run_events_legacy', 'id')),
  coalesce((SELECT max(id) FROM ops.run_events_legacy), 0) + 1), false);
ALTER TABLE ops.run_events_legacy ALTER COLUMN id DROP IDENTITY;

CREATE TABLE ops.runs (
  run_id          uuid        NOT NULL DEFAULT ops.uuid_v7(),
  provider        text        NOT NULL,
  idempotency_key text        NOT NULL,
  event_type      text,
  status          text        NOT NULL DEFAULT 'received'
                  CONSTRAINT runs_status_check CHECK (status IN ('received', 'processing', 'completed', 'retrying', 'failed', 'exception', 'ignored')),
  payload         jsonb       NOT NULL,
  body_sha256     bytea       NOT NULL,
  headers         jsonb       NOT NULL DEFAULT '{}',
  received_at     timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  completed_at    timestamptz,
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  metadata        jsonb       NOT NULL DEFAULT '{}',
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  locked_by       text,
  locked_until    timestamptz,
  replay_sha256   bytea,
  tier            text        NOT NULL DEFAULT 'live'
) PARTITION BY LIST (tier);
COMMENT ON COLUMN ops.runs.metadata IS 'Free for operators: hookgate never writes it (default {}).';
COMMENT ON COLUMN ops.runs.tier IS 'live: in the partition of its day; held: kept by retention past its day; legacy: stored before migration 011.';

-- The indexes of the old table, on the partitioned one: the old table's own are attached as they are.
CREATE INDEX runs_due_idx ON ops.runs (next_attempt_at) WHERE status IN ('received', 'retrying');
CREATE INDEX runs_leased_idx ON ops.runs (locked_until) WHERE status = 'processing';
CREATE INDEX runs_listing_idx ON ops.runs (received_at DESC, run_id DESC);

CREATE TABLE ops.runs_live PARTITION OF ops.runs (PRIMARY KEY (run_id)) FOR VALUES IN ('live') PARTITION BY RANGE (run_id);
CREATE TABLE ops.runs_held PARTITION OF ops.runs (PRIMARY KEY (run_id)) FOR VALUES IN ('held');
ALTER TABLE ops.runs_legacy ALTER COLUMN tier DROP DEFAULT;
ALTER TABLE ops.runs ATTACH PARTITION ops.runs_legacy FOR VALUES IN ('legacy');
-- Runs not done with, by status, newest first: the review lists (failed, exception) read them in order,
-- and retention finds what to keep with it. On the new tiers only: the legacy table keeps its own
-- (status) index rather than a build under this migration's lock.
CREATE INDEX runs_live_status_idx ON ops.runs_live (status, received_at DESC, run_id DESC) WHERE status NOT IN ('completed', 'ignored');
CREATE INDEX runs_held_status_idx ON ops.runs_held (status, received_at DESC, run_id DESC) WHERE status NOT IN ('completed', 'ignored');

CREATE TABLE ops.run_events (
  id     bigint      NOT NULL DEFAULT nextval('ops.run_event_ids'),
  run_id uuid,
  type   text        NOT NULL,
  at     timestamptz NOT NULL DEFAULT now(),
  data   jsonb       NOT NULL DEFAULT '{}',
  tier   text        NOT NULL DEFAULT 'live'
) PARTITION BY LIST (tier);
ALTER SEQUENCE ops.run_event_ids OWNED BY ops.run_events.id;
COMMENT ON COLUMN ops.run_events.tier IS 'The tier of its run (ops.runs.tier), or audit: no run (a refusal), or one retention removed.';

CREATE INDEX run_events_run_id_idx ON ops.run_events (run_id, at);
CREATE INDEX run_events_rejected_idx ON ops.run_events (at) WHERE run_id IS NULL;
CREATE INDEX run_events_repeats_idx ON ops.run_events (at) WHERE type IN ('duplicate', 'payload_conflict', 'replayed_body');

CREATE TABLE ops.run_events_live PARTITION OF ops.run_events FOR VALUES IN ('live') PARTITION BY RANGE (run_id);
CREATE TABLE ops.run_events_held PARTITION OF ops.run_events FOR VALUES IN ('held');
CREATE TABLE ops.run_events_audit PARTITION OF ops.run_events FOR VALUES IN ('audit') PARTITION BY RANGE (at);
ALTER TABLE ops.run_events_legacy ALTER COLUMN tier DROP DEFAULT;
ALTER TABLE ops.run_events ATTACH PARTITION ops.run_events_legacy FOR VALUES IN ('legacy');

-- A run id made at a given time (bulk fills, tests), and the smallest id of a millisecond: the bound
-- of a day's partition.
CREATE FUNCTION ops.uuid_v7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
    set_bit(set_bit(set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
        placing substring(int8send(floor(extract(epoch FROM at) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6),
      52, 1), 53, 1), 54, 1), 55, 0),
    'hex')::uuid
$$;

CREATE FUNCTION ops.uuid_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
$$;

-- The partitions of the UTC days first..last that do not exist yet, for the runs, their histories and
-- the audit rows. Each is created apart and attached (a lock that lets ingest write meanwhile), with
-- a check that proves its bounds so that attaching reads nothing. Replicas booting together call it at
-- once: they take turns (a transaction-level advisory lock), and the later ones find the tables made.
-- Returns how many tables it made.
CREATE FUNCTION ops.ensure_day_partitions(first date, last date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  day date;
  lo uuid;
  hi uuid;
  made integer := 0;
  name text;
BEGIN
  PERFORM pg_advisory_xact_lock(7364526170213);
  FOR day IN SELECT d::date FROM generate_series(first::timestamp, last::timestamp, interval '1 day') AS d LOOP
    lo := ops.uuid_floor(day::timestamp AT TIME ZONE 'UTC');
    hi := ops.uuid_floor((day + 1)::timestamp AT TIME ZONE 'UTC');
    name := 'runs_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass('ops.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS, CHECK (tier = %L AND run_id >= %L AND run_id < %L))', name, 'live', lo, hi);
      EXECUTE format('ALTER TABLE ops.runs_live ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
      made := made + 1;
    END IF;
    name := 'run_events_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass('ops.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.run_events INCLUDING DEFAULTS, CHECK (tier = %L AND run_id IS NOT NULL AND run_id >= %L AND run_id < %L))', name, 'live', lo, hi);
      EXECUTE format('ALTER TABLE ops.run_events_live ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
      made := made + 1;
    END IF;
    name := 'run_events_audit_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass('ops.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.run_events INCLUDING DEFAULTS, CHECK (tier = %L AND at >= %L AND at < %L))', name, 'audit',
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
      EXECUTE format('ALTER TABLE ops.run_events_audit ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name,
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END
$$;

-- The tier a new event of a run goes to: its run's, or audit when there is no run (any more).
CREATE FUNCTION ops.event_tier(run uuid) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT tier FROM ops.runs WHERE run_id = run LIMIT 1), 'audit')
$$;

-- Today and three days ahead; the gateway keeps as many ready from then on (src/retention.ts, DAYS_AHEAD).
SELECT ops.ensure_day_partitions((now() AT TIME ZONE 'UTC')::date, (now() AT TIME ZONE 'UTC')::date + 3);
