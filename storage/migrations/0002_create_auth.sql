-- Email-code flows (signup, password reset): server-side state, hashed codes, attempt counting.
CREATE TABLE auth_flows (
    id          bigint PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('signup', 'password_reset')),
    email       text        NOT NULL,
    user_id     bigint REFERENCES users (id) ON DELETE CASCADE,
    code_hash   bytea       NOT NULL,
    attempts    smallint    NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL,
    verified_at timestamptz,
    consumed_at timestamptz,
    burned_at   timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_flows_email_idx ON auth_flows (email, created_at DESC);
CREATE INDEX auth_flows_expires_idx ON auth_flows (expires_at);

-- Login sessions. A session has one live refresh token at a time; access tokens carry its id (sid).
CREATE TABLE sessions (
    id             bigint PRIMARY KEY,
    user_id        bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    revoked_at     timestamptz,
    revoked_reason text,
    user_agent     text        NOT NULL DEFAULT '',
    ip             text        NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_idx ON sessions (user_id) WHERE revoked_at IS NULL;

-- Every refresh token ever issued (hashed). A used one presented again is a reuse: the session is revoked.
CREATE TABLE refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id bigint      NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    used_at    timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
