-- ops.runs.metadata (001) has never been written by hookgate: it is the operators' column, for tags
-- they add by hand or from their own tooling (a ticket, a batch of a bulk retry...). Said where
-- psql's \d+ shows it.
COMMENT ON COLUMN ops.runs.metadata IS 'Free for operators: hookgate never writes it (default {}).';
