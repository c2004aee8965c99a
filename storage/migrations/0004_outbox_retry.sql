-- Outbox retries: a row that fails to publish waits (next_attempt_at, exponential backoff) instead of blocking
-- the rows behind it, and is parked as dead (dead_at) after too many attempts. A relay also leases the rows
-- it works on by pushing next_attempt_at forward, so it holds no row lock while it talks to Redis and Ray.
ALTER TABLE outbox
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN dead_at         timestamptz;
DROP INDEX outbox_unsent_idx;
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at) WHERE sent_at IS NULL AND dead_at IS NULL;

-- Retention (actors/retention.py) deletes finished rows by these timestamps in small batches; without the
-- indexes each batch would scan the whole table.
CREATE INDEX outbox_sent_idx ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX outbox_dead_idx ON outbox (dead_at) WHERE dead_at IS NOT NULL;
CREATE INDEX refresh_tokens_used_idx ON refresh_tokens (used_at) WHERE used_at IS NOT NULL;
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
CREATE INDEX sessions_revoked_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
