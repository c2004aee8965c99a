"""Auth aggregate: email-code flows, sessions and refresh tokens."""

from __future__ import annotations

import datetime as dt

import asyncpg

from storage.errors import RowNotFound

FLOW_COLUMNS = "id, kind, email, user_id, code_hash, attempts, expires_at, verified_at, consumed_at, burned_at"


async def insert_flow(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    flow_id: int,
    kind: str,
    email: str,
    user_id: int | None,
    code_hash: bytes,
    expires_at: dt.datetime,
) -> None:
    await conn.execute(
        """INSERT INTO auth_flows (id, kind, email, user_id, code_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        flow_id,
        kind,
        email,
        user_id,
        code_hash,
        expires_at,
    )


async def get_flow_for_update(conn: asyncpg.Connection, flow_id: int, kind: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        f"SELECT {FLOW_COLUMNS} FROM auth_flows WHERE id = $1 AND kind = $2 FOR UPDATE", flow_id, kind
    )
    if row is None:
        raise RowNotFound(f"flow {flow_id}")
    return row


async def record_failed_attempt(conn: asyncpg.Connection, flow_id: int, burn: bool) -> None:
    await conn.execute(
        """UPDATE auth_flows SET attempts = attempts + 1,
                  burned_at = CASE WHEN $2 THEN now() ELSE burned_at END
           WHERE id = $1""",
        flow_id,
        burn,
    )


async def mark_flow_verified(conn: asyncpg.Connection, flow_id: int) -> None:
    await conn.execute("UPDATE auth_flows SET verified_at = coalesce(verified_at, now()) WHERE id = $1", flow_id)


async def mark_flow_consumed(conn: asyncpg.Connection, flow_id: int) -> None:
    await conn.execute("UPDATE auth_flows SET consumed_at = now() WHERE id = $1", flow_id)


async def insert_session(
    conn: asyncpg.Connection,
    *,
    session_id: int,
    user_id: int,
    expires_at: dt.datetime,
    refresh_hash: bytes,
    user_agent: str,
    ip: str,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (id, user_id, expires_at, user_agent, ip) VALUES ($1, $2, $3, $4, $5)""",
        session_id,
        user_id,
        expires_at,
        user_agent[:300],
        ip[:64],
    )
    await conn.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", refresh_hash, session_id)


async def get_refresh_for_update(conn: asyncpg.Connection, token_hash: bytes) -> asyncpg.Record:
    """The refresh token with its session, locking the session row (serializes concurrent refreshes)."""
    row = await conn.fetchrow(
        """SELECT r.token_hash, r.used_at, s.id AS session_id, s.user_id, s.expires_at, s.revoked_at
           FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
           WHERE r.token_hash = $1 FOR UPDATE OF s, r""",
        token_hash,
    )
    if row is None:
        raise RowNotFound("refresh token")
    return row


async def rotate_refresh(conn: asyncpg.Connection, session_id: int, old_hash: bytes, new_hash: bytes) -> None:
    await conn.execute("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", old_hash)
    await conn.execute("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)", new_hash, session_id)
    await conn.execute("UPDATE sessions SET last_used_at = now() WHERE id = $1", session_id)


async def revoke_session(conn: asyncpg.Connection, session_id: int, reason: str) -> bool:
    status = await conn.execute(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        session_id,
        reason,
    )
    return not status.endswith(" 0")


async def revoke_user_sessions(conn: asyncpg.Connection, user_id: int, reason: str) -> list[int]:
    rows = await conn.fetch(
        """UPDATE sessions SET revoked_at = now(), revoked_reason = $2
           WHERE user_id = $1 AND revoked_at IS NULL RETURNING id""",
        user_id,
        reason,
    )
    return [int(r["id"]) for r in rows]


async def is_session_active(conn: asyncpg.Connection | asyncpg.Pool, session_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL AND expires_at > now())",
            session_id,
        )
    )


# ---------------------------------------------------------------- retention (bounded batches)


async def delete_finished_flows(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` flows expired, consumed or burned more than ``older_than_s`` ago."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM auth_flows WHERE id IN (
                   SELECT id FROM auth_flows
                   WHERE expires_at < now() - make_interval(secs => $1)
                      OR consumed_at < now() - make_interval(secs => $1)
                      OR burned_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )


async def delete_used_refresh_tokens(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` refresh tokens used (rotated) more than ``older_than_s`` ago. Reuse detection
    needs the used row: a token presented after this is merely unknown, and its session is not revoked."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM refresh_tokens WHERE token_hash IN (
                   SELECT token_hash FROM refresh_tokens WHERE used_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )


async def delete_refresh_tokens_of_ended_sessions(
    conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int
) -> int:
    """Delete up to ``limit`` refresh tokens whose session expired or was revoked more than ``older_than_s``
    ago (the session row stays a while longer, for the account's history)."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM refresh_tokens WHERE token_hash IN (
                   SELECT r.token_hash FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id
                   WHERE s.expires_at < now() - make_interval(secs => $1)
                      OR s.revoked_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE OF r SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )


async def delete_ended_sessions(conn: asyncpg.Connection | asyncpg.Pool, older_than_s: float, limit: int) -> int:
    """Delete up to ``limit`` sessions expired or revoked more than ``older_than_s`` ago (their refresh tokens
    go with them: ON DELETE CASCADE)."""
    return int(
        await conn.fetchval(
            """WITH gone AS (DELETE FROM sessions WHERE id IN (
                   SELECT id FROM sessions
                   WHERE expires_at < now() - make_interval(secs => $1)
                      OR revoked_at < now() - make_interval(secs => $1)
                   LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1)
               SELECT count(*) FROM gone""",
            older_than_s,
            limit,
        )
    )
