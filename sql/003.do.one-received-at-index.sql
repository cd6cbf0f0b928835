-- ops.runs had two indexes leading with received_at: runs_received_at_idx (001) and
-- runs_listing_idx (received_at DESC, run_id DESC; 002), which serves every range and order on
-- received_at as well (a B-tree is read in either direction). Each stored delivery paid for both.
DROP INDEX IF EXISTS ops.runs_received_at_idx;
