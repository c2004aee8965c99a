"""Bodies of /healthz and /readyz: ok or not, no internals."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ok"]


class ReadyChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    postgres: Literal["ok", "unavailable"]
    redis: Literal["ok", "unavailable"]
    ray: Literal["ok", "unavailable"]


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["ready"]
    checks: ReadyChecks
