-- The ingest statement's cost no longer grows with the days kept (RETENTION_DAYS, 30 by default).
--
-- 1. The tier of a stored run (for its duplicate's event) is looked up by ops.event_tier, now in
--    PL/pgSQL: never inlined, its query is planned with the run id as a parameter known when it
--    starts, so PostgreSQL opens the partition of that run's day alone (pruning at executor start).
--    The same lookup written into the ingest statement (a join on each stored key) could only prune
--    while running: its cached plan started an index scan of every day's partition, of every tier, on
--    every batch, new keys or not (one delivery alone: 584 µs of PostgreSQL with 4 days of partitions,
--    760 with 34; 456 and 502 this way; docs/benchmarks.md).
-- 2. A day's partition has no CHECK of its bounds. 011 made one so that ATTACH would not read the
--    table, but a new partition is empty: there is nothing to read. Kept after ATTACH, the check
--    repeated the partition's bound, and every statement that inserts into the partition compiled it
--    again. The existing ones are dropped (the status check stays: it is the table's).
CREATE OR REPLACE FUNCTION ops.event_tier(run uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
BEGIN
  RETURN coalesce((SELECT tier FROM ops.runs WHERE run_id = run LIMIT 1), 'audit');
END
$$;

DO $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT con.conrelid::regclass AS rel, con.conname FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid
    WHERE con.contype = 'c' AND con.coninhcount = 0 AND cl.relispartition AND cl.relnamespace = 'ops'::regnamespace
      AND cl.relname ~ '^(runs|run_events|run_events_audit)_p[0-9]{8}$'
  LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.rel, c.conname);
  END LOOP;
END
$$;

-- As in 011, without the checks of the bounds.
CREATE OR REPLACE FUNCTION ops.ensure_day_partitions(first date, last date) RETURNS integer
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
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
      EXECUTE format('ALTER TABLE ops.runs_live ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
      made := made + 1;
    END IF;
    name := 'run_events_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass('ops.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.run_events INCLUDING DEFAULTS)', name);
      EXECUTE format('ALTER TABLE ops.run_events_live ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
      made := made + 1;
    END IF;
    name := 'run_events_audit_p' || to_char(day, 'YYYYMMDD');
    IF to_regclass('ops.' || name) IS NULL THEN
      EXECUTE format('CREATE TABLE ops.%I (LIKE ops.run_events INCLUDING DEFAULTS)', name);
      EXECUTE format('ALTER TABLE ops.run_events_audit ATTACH PARTITION ops.%I FOR VALUES FROM (%L) TO (%L)', name,
        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END
$$;
