"""Bodies and responses of /auth."""

from __future__ import annotations

from pydantic import BaseModel

from api.schemas.common import Strict
from api.schemas.fields import (
    Bio,
    Birthday,
    Code,
    Email,
    FlowId,
    LoginPassword,
    Name,
    Password,
    RefreshToken,
    Username,
)
from api.schemas.fields import Login as LoginField
from api.schemas.users import Me


class SignupStart(Strict):
    email: Email


class FlowStarted(BaseModel):
    flow_id: str
    expires_at: str


class CodeCheck(Strict):
    flow_id: FlowId
    code: Code


class FlowVerified(BaseModel):
    flow_id: str
    email: str


class SignupComplete(Strict):
    flow_id: FlowId
    username: Username
    name: Name
    password: Password
    birthday: Birthday
    bio: Bio | None = None


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (the token scheme, not a secret)
    expires_in: int


class UserWithTokens(BaseModel):
    user: Me
    tokens: Tokens


class Login(Strict):
    login: LoginField
    password: LoginPassword


class RefreshBody(Strict):
    refresh_token: RefreshToken


class TokensOnly(BaseModel):
    tokens: Tokens


class ResetStart(Strict):
    email: Email


class ResetComplete(Strict):
    flow_id: FlowId
    new_password: Password


class ResetDone(BaseModel):
    password_changed: bool
