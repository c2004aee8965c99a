-- The follow graph (DESIGN.md 6): one row per follow, indexed in both directions. Followers of X, newest first:
-- follows_followee_idx; those X follows, newest first: follows_follower_idx (the primary key answers "does A
-- follow B"). The counters on users change in the same transaction as these rows (actors/follows.py).
CREATE TABLE follows (
    follower_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, followee_id),
    CONSTRAINT follows_not_self CHECK (follower_id <> followee_id)
);
CREATE INDEX follows_followee_idx ON follows (followee_id, created_at DESC, follower_id DESC);
CREATE INDEX follows_follower_idx ON follows (follower_id, created_at DESC, followee_id DESC);

-- Notifications, in their final table: one row per event, owned by its recipient. The inbox reads by owner,
-- newest first; the unread count by owner among unread rows.
CREATE TABLE notifications (
    id         bigint PRIMARY KEY,
    owner_id   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type       text        NOT NULL,
    actor_id   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id    bigint,
    comment_id bigint,
    emoji      text,
    created_at timestamptz NOT NULL DEFAULT now(),
    read_at    timestamptz,
    CONSTRAINT notifications_type_check CHECK (type IN ('follow', 'reaction_post', 'reaction_comment',
        'comment_post', 'reply_comment', 'mention_post', 'mention_comment', 'repost'))
);
CREATE INDEX notifications_owner_idx ON notifications (owner_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (owner_id, id) WHERE read_at IS NULL;
