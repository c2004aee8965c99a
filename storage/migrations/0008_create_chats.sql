-- 1:1 chats (issue 10). One chat per pair of users, whoever starts it: the pair is stored ordered
-- (user_low < user_high) under a unique constraint. `last_seq` is the chat's last message sequence number; the
-- ChatShard entity that owns the chat is its only writer, and every insert moves `last_seq` from the value the
-- entity holds to the next one (a guard: a second writer holding a stale chat cannot write).
CREATE TABLE chats (
    id         bigint PRIMARY KEY,
    user_low   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high  bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_seq   bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chats_pair_key UNIQUE (user_low, user_high),
    CONSTRAINT chats_pair_ordered CHECK (user_low < user_high)
);

-- Each member's side of a chat: its receipts (watermarks only move forward) and the chat's last activity, for
-- "my chats, most recent first" (chat_members_user_idx).
CREATE TABLE chat_members (
    chat_id       bigint      NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    peer_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delivered_seq bigint      NOT NULL DEFAULT 0 CHECK (delivered_seq >= 0),
    read_seq      bigint      NOT NULL DEFAULT 0 CHECK (read_seq >= 0 AND read_seq <= delivered_seq),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user_idx ON chat_members (user_id, updated_at DESC, chat_id DESC);

-- Messages: gap-free `seq` per chat; a sender's `client_id` makes a send exactly-once.
CREATE TABLE messages (
    id          bigint PRIMARY KEY,
    chat_id     bigint      NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    sender_id   bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id   text        NOT NULL,
    type        text        NOT NULL,
    text        text,
    media_id    bigint      REFERENCES media (id) ON DELETE SET NULL,
    caption     text,
    duration_ms bigint      CHECK (duration_ms >= 0),
    reply_to    bigint      REFERENCES messages (id) ON DELETE SET NULL,
    deleted     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    edited_at   timestamptz,
    CONSTRAINT messages_seq_key UNIQUE (chat_id, seq),
    CONSTRAINT messages_client_key UNIQUE (chat_id, sender_id, client_id),
    CONSTRAINT messages_type_check CHECK (type IN ('text', 'voice', 'image', 'video', 'audio', 'file'))
);

-- "Delete for me": the message is hidden from that member only.
CREATE TABLE message_hidden (
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, message_id)
);

-- One reaction per member per message, replaceable.
CREATE TABLE message_reactions (
    message_id bigint      NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    emoji      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id)
);
