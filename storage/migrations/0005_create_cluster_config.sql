-- Settings that every process of a deployment must agree on and that cannot change while it runs, recorded by
-- the first api process to start (USER_SHARDS, CHAT_SHARDS: changing K re-maps every entity to another shard).
-- A process whose configuration disagrees refuses to start; `python -m storage.cluster_config set` changes them.
CREATE TABLE cluster_config (
    key        text PRIMARY KEY,
    value      text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
