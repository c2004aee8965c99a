-- Accounts. Usernames and emails are stored lower-case; uniqueness is therefore case-insensitive.
CREATE TABLE users (
    id              bigint PRIMARY KEY,
    username        text        NOT NULL,
    email           text        NOT NULL,
    name            text        NOT NULL,
    bio             text        NOT NULL DEFAULT '',
    birthday        date        NOT NULL,
    password_hash   text        NOT NULL,
    avatar_media_id bigint,
    followers_count integer     NOT NULL DEFAULT 0 CHECK (followers_count >= 0),
    following_count integer     NOT NULL DEFAULT 0 CHECK (following_count >= 0),
    posts_count     integer     NOT NULL DEFAULT 0 CHECK (posts_count >= 0),
    last_seen       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9_.]{3,30}$'),
    CONSTRAINT users_email_lower CHECK (email = lower(email))
);
