-- Engagement (issue 11): reactions on posts and comments, comments with replies at any depth, reposts, saves.
--
-- A post's counters are sharded (post_counts): each change adds to the row of (post, counter, shard) where the
-- shard is the acting user's id modulo 8, so many users reacting to one hot post update eight rows, not one;
-- a read sums them. Counters change in the same transaction as the rows they count. `counter` is one of
-- reactions, comments, reposts, saves, or `emoji:<emoji>` (the reactions summary).
ALTER TABLE posts DROP COLUMN reactions_count, DROP COLUMN comments_count, DROP COLUMN reposts_count,
    DROP COLUMN saves_count;

CREATE TABLE post_counts (
    post_id bigint   NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    counter text     NOT NULL,
    shard   smallint NOT NULL CHECK (shard >= 0 AND shard < 8),
    n       integer  NOT NULL,
    PRIMARY KEY (post_id, counter, shard)
);

CREATE TABLE post_reactions (
    post_id    bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX post_reactions_post_idx ON post_reactions (post_id, created_at DESC, user_id DESC);
CREATE INDEX post_reactions_user_idx ON post_reactions (user_id, created_at DESC, post_id DESC);

CREATE TABLE comments (
    id              bigint PRIMARY KEY,
    post_id         bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    parent_id       bigint      REFERENCES comments (id) ON DELETE CASCADE,
    author_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text            text        NOT NULL DEFAULT '',
    media_id        bigint      REFERENCES media (id),
    reactions_count integer     NOT NULL DEFAULT 0 CHECK (reactions_count >= 0),
    replies_count   integer     NOT NULL DEFAULT 0 CHECK (replies_count >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_post_idx ON comments (post_id, created_at DESC, id DESC) WHERE parent_id IS NULL;
CREATE INDEX comments_parent_idx ON comments (parent_id, created_at DESC, id DESC) WHERE parent_id IS NOT NULL;
CREATE INDEX comments_author_idx ON comments (author_id, created_at DESC, id DESC);

CREATE TABLE comment_reactions (
    comment_id bigint      NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (comment_id, user_id)
);
CREATE INDEX comment_reactions_comment_idx ON comment_reactions (comment_id, created_at DESC, user_id DESC);

CREATE TABLE comment_mentions (
    comment_id bigint NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (comment_id, user_id)
);

CREATE TABLE reposts (
    post_id    bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX reposts_user_idx ON reposts (user_id, created_at DESC, post_id DESC);

CREATE TABLE saves (
    post_id    bigint      NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX saves_user_idx ON saves (user_id, created_at DESC, post_id DESC);

-- A notification about a comment goes with the comment.
CREATE INDEX notifications_comment_idx ON notifications (comment_id) WHERE comment_id IS NOT NULL;
CREATE INDEX notifications_post_idx ON notifications (post_id) WHERE post_id IS NOT NULL;
