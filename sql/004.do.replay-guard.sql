-- Replay protection where the idempotency key comes from a header the signature does not cover
-- (GitHub's X-GitHub-Delivery, Shopify's X-Shopify-Event-Id, Twilio's idempotency token...): the
-- hash of the signed bytes (with the event type, for senders that send one body under two types)
-- is unique per provider, so the same signed bytes under a fresh key are a duplicate of the first
-- run, on every replica. NULL for providers whose key is signed (Stripe, Standard Webhooks...).
ALTER TABLE ops.runs ADD COLUMN replay_sha256 bytea;
CREATE UNIQUE INDEX runs_replay_idx ON ops.runs (provider, replay_sha256) WHERE replay_sha256 IS NOT NULL;
