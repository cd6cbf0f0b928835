-- Data lifecycle, step 2 of 4: the tier column that 011 partitions by. Every existing row is
-- 'legacy': the table as it is becomes the 'legacy' partition, dropped whole once retention has
-- passed for all of it. Adding a column with a constant default and a NOT VALID check rewrites
-- nothing: two short locks.
ALTER TABLE ops.runs ADD COLUMN tier text NOT NULL DEFAULT 'legacy';
ALTER TABLE ops.runs ADD CONSTRAINT runs_legacy_tier CHECK (tier = 'legacy') NOT VALID;
ALTER TABLE ops.run_events ADD COLUMN tier text NOT NULL DEFAULT 'legacy';
ALTER TABLE ops.run_events ADD CONSTRAINT run_events_legacy_tier CHECK (tier = 'legacy') NOT VALID;
