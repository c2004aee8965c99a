-- Transactional outbox: a domain write inserts its event here in the same transaction; after commit the
-- event is delivered (per-user Redis streams + live publish) and marked sent. A relay re-delivers rows left
-- unsent by a crash, so an event is delayed, never lost.
CREATE TABLE outbox (
    id         bigint PRIMARY KEY,
    recipients bigint[]    NOT NULL,
    type       text        NOT NULL,
    data       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_unsent_idx ON outbox (created_at) WHERE sent_at IS NULL;
