-- hookgate's audit and ingest schema. Operators query these names: keep them.

-- One row per distinct event: UNIQUE (provider, idempotency_key) is what makes ingest idempotent
-- across every replica.
CREATE TABLE ops.runs (
  run_id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  provider        text        NOT NULL,
  idempotency_key text        NOT NULL,
  event_type      text,
  status          text        NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'processing', 'completed', 'retrying', 'failed', 'exception', 'ignored')),
  payload         jsonb       NOT NULL,
  body_sha256     bytea       NOT NULL,   -- hash of the exact bytes the sender signed
  headers         jsonb       NOT NULL DEFAULT '{}',   -- request headers minus signatures, keys and cookies
  received_at     timestamptz NOT NULL DEFAULT now(),
  started_at      timestamptz,
  completed_at    timestamptz,
  attempts        integer     NOT NULL DEFAULT 0,
  last_error      text,
  metadata        jsonb       NOT NULL DEFAULT '{}',
  CONSTRAINT runs_provider_idempotency_key_key UNIQUE (provider, idempotency_key)
);

CREATE INDEX runs_received_at_idx ON ops.runs (received_at);
CREATE INDEX runs_status_idx ON ops.runs (status) WHERE status NOT IN ('completed', 'ignored');

-- Append-only history: every delivery ('received', 'duplicate'), every refusal ('rejected', with
-- no run: run_id is NULL), and later every attempt and decision.
CREATE TABLE ops.run_events (
  id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id uuid        REFERENCES ops.runs (run_id) ON DELETE CASCADE,
  type   text        NOT NULL,
  at     timestamptz NOT NULL DEFAULT now(),
  data   jsonb       NOT NULL DEFAULT '{}'
);

CREATE INDEX run_events_run_id_idx ON ops.run_events (run_id, at);
CREATE INDEX run_events_rejected_idx ON ops.run_events (at) WHERE run_id IS NULL;
