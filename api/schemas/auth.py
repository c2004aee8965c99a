"""Bodies and responses of /auth."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from api.schemas.common import Strict
from api.schemas.users import Me


class SignupStart(Strict):
    email: str = Field(max_length=320)


class FlowStarted(BaseModel):
    flow_id: str
    expires_at: str


class CodeCheck(Strict):
    flow_id: str = Field(max_length=32)
    code: str = Field(max_length=16)


class FlowVerified(BaseModel):
    flow_id: str
    email: str


class SignupComplete(Strict):
    flow_id: str = Field(max_length=32)
    username: str = Field(max_length=100)
    name: str = Field(max_length=200)
    password: str = Field(max_length=1024)
    birthday: dt.date
    bio: str | None = Field(default=None, max_length=2000)


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (the token scheme, not a secret)
    expires_in: int


class UserWithTokens(BaseModel):
    user: Me
    tokens: Tokens


class Login(Strict):
    login: str = Field(max_length=320, description="email or username")
    password: str = Field(max_length=1024)


class RefreshBody(Strict):
    refresh_token: str = Field(max_length=512)


class TokensOnly(BaseModel):
    tokens: Tokens


class ResetStart(Strict):
    email: str = Field(max_length=320)


class ResetComplete(Strict):
    flow_id: str = Field(max_length=32)
    new_password: str = Field(max_length=1024)


class ResetDone(BaseModel):
    password_changed: bool
