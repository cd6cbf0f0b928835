-- The console's overview charts deliveries per minute by outcome: new runs come from ops.runs
-- (runs_listing_idx), refusals from run_events_rejected_idx, and the deliveries that repeated a run
-- (duplicate, payload_conflict, replayed_body) from this index, which holds only those rows.
CREATE INDEX run_events_repeats_idx ON ops.run_events (at) WHERE type IN ('duplicate', 'payload_conflict', 'replayed_body');
