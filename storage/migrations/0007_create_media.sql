-- Uploaded media (API.md: POST /media, upload, POST /media/{id}/complete). A row is made `pending` with what the
-- uploader declared; `complete` checks the stored object (size, magic bytes, image decode) and makes it `ready`
-- with what the server measured. Only `ready` media can be attached, and only by its owner. `public` turns on
-- when the media is attached somewhere public (an avatar, a post, a comment): then its stable URL is served to
-- anyone; until then only to its owner or through a signed, expiring URL.
CREATE TABLE media (
    id            bigint PRIMARY KEY,
    owner_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       text        NOT NULL,
    kind          text        NOT NULL,
    content_type  text        NOT NULL,
    declared_size bigint      NOT NULL CHECK (declared_size > 0),
    size          bigint      CHECK (size >= 0),
    name          text,
    state         text        NOT NULL DEFAULT 'pending',
    public        boolean     NOT NULL DEFAULT false,
    object_key    text        NOT NULL,
    thumb_key     text,
    width         integer,
    height        integer,
    duration_ms   bigint,
    blurhash      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    upload_expires_at timestamptz NOT NULL,
    completed_at  timestamptz,
    CONSTRAINT media_purpose_check CHECK (purpose IN ('post', 'comment', 'avatar', 'chat')),
    CONSTRAINT media_kind_check CHECK (kind IN ('image', 'video', 'audio', 'file')),
    CONSTRAINT media_state_check CHECK (state IN ('pending', 'ready')),
    CONSTRAINT media_ready_has_size CHECK (state = 'pending' OR (size IS NOT NULL AND completed_at IS NOT NULL))
);
-- A user's uploads, newest first (the per-user cap on pending uploads, the owner's media).
CREATE INDEX media_owner_idx ON media (owner_id, state, created_at DESC);
-- Abandoned uploads, oldest first, for the retention sweep.
CREATE INDEX media_pending_idx ON media (created_at) WHERE state = 'pending';

-- An avatar is one of its owner's ready images (actors/media.py checks owner, kind and state before setting it).
ALTER TABLE users ADD CONSTRAINT users_avatar_media_fk
    FOREIGN KEY (avatar_media_id) REFERENCES media (id) ON DELETE SET NULL;
