"""/me: the caller's own account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api import presenters
from api.deps import BEARER_SECURITY, Ctx, User, WriteLimit, ctx_of, token_user
from api.responses import Encoded, encoded
from api.schemas.common import error_responses
from api.schemas.media import SetAvatar
from api.schemas.users import Me, PatchMe
from domain import ops
from domain.errors import NotFound, Unauthenticated
from domain.rules import check_profile_changes
from storage import users as user_store
from storage.errors import RowNotFound

router = APIRouter(tags=["me"])


@router.get("/me", response_model=Me, responses=error_responses(401, 404), openapi_extra=BEARER_SECURITY)
async def get_me(request: Request) -> Encoded:
    # The hot read, in one round trip: the row and the session check in one query (instead of the Redis
    # denylist); the caller and the context are read here, not through FastAPI's dependency resolution.
    user = await token_user(request)
    try:
        row = await user_store.get_user_of_session(ctx_of(request).services.pool, user.user_id, user.session_id)
    except RowNotFound as exc:
        raise NotFound("This account no longer exists.") from exc
    if not row["session_live"]:
        raise Unauthenticated("This session has ended; log in again.", reason="session_revoked")
    return encoded(request, presenters.me(row))


@router.patch(
    "/me", response_model=Me, responses=error_responses(400, 401, 404, 409, 415, 422, 429), dependencies=[WriteLimit]
)
async def patch_me(request: Request, body: PatchMe, user: User, ctx: Ctx) -> Encoded:
    """Change name, bio, birthday or username (409 `username_taken`)."""
    changes = check_profile_changes(body.model_dump(exclude_unset=True))
    row = await ctx.users.call(ops.UpdateProfile(user_id=user.user_id, changes=changes))
    return encoded(request, presenters.me(row))


@router.put(
    "/me/avatar", response_model=Me, responses=error_responses(400, 401, 404, 415, 422, 429), dependencies=[WriteLimit]
)
async def put_avatar(request: Request, body: SetAvatar, user: User, ctx: Ctx) -> Encoded:
    """Set the avatar to one of your own completed uploads (`purpose: avatar`, an image); 422 `invalid_media`
    for anything else, someone else's media included. The avatar's URL is stable and public."""
    row = await ctx.users.call(ops.SetAvatar(user_id=user.user_id, media_id=int(body.media_id)))
    return encoded(request, presenters.me(row))


@router.delete("/me/avatar", response_model=Me, responses=error_responses(401, 404, 429), dependencies=[WriteLimit])
async def delete_avatar(request: Request, user: User, ctx: Ctx) -> Encoded:
    """Remove the avatar (`avatar` becomes null); the upload itself stays yours."""
    row = await ctx.users.call(ops.SetAvatar(user_id=user.user_id, media_id=None))
    return encoded(request, presenters.me(row))
