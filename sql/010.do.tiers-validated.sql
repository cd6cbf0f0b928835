-- Data lifecycle, step 3 of 4: the checks of 009 validated in a transaction of their own. VALIDATE
-- reads the whole table but takes a lock that lets ingest and the workers write meanwhile; with the
-- check valid, 011 attaches the tables as partitions without reading them again under its lock.
ALTER TABLE ops.runs VALIDATE CONSTRAINT runs_legacy_tier;
ALTER TABLE ops.run_events VALIDATE CONSTRAINT run_events_legacy_tier;
