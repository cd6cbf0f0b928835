-- Processing: ops.runs is the queue. A run waits in 'received' or 'retrying' until next_attempt_at;
-- a worker claims it (FOR UPDATE SKIP LOCKED) by setting 'processing' with a lease (locked_by,
-- locked_until). A lease that expires (the worker died) makes the run claimable again.
ALTER TABLE ops.runs
  ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN locked_by       text,
  ADD COLUMN locked_until    timestamptz;

CREATE INDEX runs_due_idx ON ops.runs (next_attempt_at) WHERE status IN ('received', 'retrying');
CREATE INDEX runs_leased_idx ON ops.runs (locked_until) WHERE status = 'processing';

-- The human-review queue: conflicts with the system of record, payload conflicts, handler decisions.
CREATE TABLE ops.exceptions (
  exception_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  run_id       uuid        NOT NULL REFERENCES ops.runs (run_id) ON DELETE CASCADE,
  reason       text        NOT NULL,
  details      jsonb       NOT NULL DEFAULT '{}',
  status       text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
  created_at   timestamptz NOT NULL DEFAULT now(),
  closed_at    timestamptz,
  closed_by    text,
  resolution   text        CHECK (resolution IN ('retry', 'close')),
  note         text
);

CREATE INDEX exceptions_status_idx ON ops.exceptions (status, created_at DESC, exception_id DESC);
CREATE INDEX exceptions_run_id_idx ON ops.exceptions (run_id);
CREATE INDEX runs_listing_idx ON ops.runs (received_at DESC, run_id DESC);
