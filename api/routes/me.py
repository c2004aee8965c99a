"""/me: the caller's own account."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request

from api.contract import MAX_ID, body, operation
from api.deps import BEARER_SECURITY, Ctx, User, WriteLimit, ctx_of, token_user
from api.reads import users as user_reads
from api.responses import Encoded, encoded
from domain import ops
from domain.errors import ValidationFailed
from domain.present import me
from domain.rules import RuleError, check_profile_changes
from domain.wire.accounts import PatchMe, SetAvatar, day
from domain.wire.users import Me

router = APIRouter(tags=["me"])


@router.get("/me", **operation("getMe", ok=Me, errors=(401, 404), extra=BEARER_SECURITY))
async def get_me(request: Request) -> Encoded:
    # The hot read, in one round trip: the row and the session check in one query (instead of the Redis
    # denylist); the caller and the context are read here, not through FastAPI's dependency resolution.
    user = await token_user(request)
    services = ctx_of(request).services
    account = await user_reads.own_account(
        services.pool, services.settings.public_base_url, user.user_id, user.session_id
    )
    return encoded(request, account)


def _changes(payload: PatchMe) -> dict[str, Any]:
    """The fields sent, checked (domain/rules.py ``check_profile_changes``): column -> value, or 422 naming every
    bad field."""
    raw = {name: value for name in payload.__struct_fields__ if (value := getattr(payload, name)) is not msgspec.UNSET}
    errors: dict[str, str] = {}
    if "birthday" in raw:
        try:
            raw["birthday"] = day(raw["birthday"])
        except RuleError as exc:
            errors["birthday"] = str(exc)
            del raw["birthday"]
    try:
        changes = check_profile_changes(raw)
    except ValidationFailed as exc:
        raise ValidationFailed({**exc.details["fields"], **errors}) from None
    if errors:
        raise ValidationFailed(errors)
    return changes


@router.patch(
    "/me",
    **operation("updateMe", ok=Me, request=PatchMe, errors=(400, 401, 404, 409, 415, 422, 429)),
    dependencies=[WriteLimit],
)
async def patch_me(request: Request, user: User, ctx: Ctx, payload: PatchMe = body(PatchMe)) -> Encoded:
    """Change name, bio, birthday or username (409 `username_taken`)."""
    row = await ctx.users.call(ops.UpdateProfile(user_id=user.user_id, changes=_changes(payload)))
    return encoded(request, me(row, ctx.services.settings.public_base_url))


@router.put(
    "/me/avatar",
    **operation("setAvatar", ok=Me, request=SetAvatar, errors=(400, 401, 404, 415, 422, 429)),
    dependencies=[WriteLimit],
)
async def put_avatar(request: Request, user: User, ctx: Ctx, payload: SetAvatar = body(SetAvatar)) -> Encoded:
    """Set the avatar to one of your own completed uploads (`purpose: avatar`, an image); 422 `invalid_media`
    for anything else, someone else's media included. The avatar's URL is stable and public."""
    media_id = int(payload.media_id)
    if media_id > MAX_ID:  # no id is that large: nobody's upload, as for any other id that is not yours
        raise ValidationFailed({"media_id": f"media {media_id} is not one of your uploads"}, code="invalid_media")
    row = await ctx.users.call(ops.SetAvatar(user_id=user.user_id, media_id=media_id))
    return encoded(request, me(row, ctx.services.settings.public_base_url))


@router.delete(
    "/me/avatar",
    **operation("deleteAvatar", ok=Me, errors=(401, 404, 429)),
    dependencies=[WriteLimit],
)
async def delete_avatar(request: Request, user: User, ctx: Ctx) -> Encoded:
    """Remove the avatar (`avatar` becomes null); the upload itself stays yours."""
    row = await ctx.users.call(ops.SetAvatar(user_id=user.user_id, media_id=None))
    return encoded(request, me(row, ctx.services.settings.public_base_url))
