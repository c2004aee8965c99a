-- Posts (issue 11): a post with 1-10 media in order, its caption's mentions (existing users only) and hashtags
-- (lower-case). Deleting a post deletes its rows here (cascade); the author's posts_count and each hashtag's
-- posts_count change in the same transaction. Counters of a post's reactions, comments, reposts and saves live
-- on the row for now (the reactions work adds sharded counters for hot posts).
CREATE TABLE posts (
    id              bigint PRIMARY KEY,
    author_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type            text        NOT NULL,
    caption         text        NOT NULL DEFAULT '',
    reactions_count integer     NOT NULL DEFAULT 0 CHECK (reactions_count >= 0),
    comments_count  integer     NOT NULL DEFAULT 0 CHECK (comments_count >= 0),
    reposts_count   integer     NOT NULL DEFAULT 0 CHECK (reposts_count >= 0),
    saves_count     integer     NOT NULL DEFAULT 0 CHECK (saves_count >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT posts_type_check CHECK (type IN ('photo', 'video', 'reel'))
);
CREATE INDEX posts_author_idx ON posts (author_id, created_at DESC, id DESC);

CREATE TABLE post_media (
    post_id  bigint   NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    position smallint NOT NULL CHECK (position >= 0 AND position < 10),
    media_id bigint   NOT NULL REFERENCES media (id),
    PRIMARY KEY (post_id, position),
    CONSTRAINT post_media_once UNIQUE (media_id)  -- an upload belongs to one post
);

CREATE TABLE post_mentions (
    post_id    bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (post_id, user_id)
);
-- "Posts mentioning me", newest first.
CREATE INDEX post_mentions_user_idx ON post_mentions (user_id, created_at DESC, post_id DESC);

CREATE TABLE hashtags (
    tag         text    PRIMARY KEY,
    posts_count integer NOT NULL DEFAULT 0 CHECK (posts_count >= 0)
);
CREATE TABLE post_hashtags (
    post_id    bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    tag        text        NOT NULL REFERENCES hashtags (tag),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (post_id, tag)
);
-- A hashtag page, newest first.
CREATE INDEX post_hashtags_tag_idx ON post_hashtags (tag, created_at DESC, post_id DESC);

-- Idempotency-Key (API.md 1): per user and route, the first response to a key is kept 24 h and returned to
-- every retry with the same body; another body under the same key is refused (422 idempotency_key_reused).
CREATE TABLE idempotency_keys (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    route      text        NOT NULL,
    key        text        NOT NULL,
    body_hash  bytea       NOT NULL,
    status     smallint    NOT NULL,
    response   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, route, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
