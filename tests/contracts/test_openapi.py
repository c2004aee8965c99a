"""The committed OpenAPI document is what the code serves, and it covers API.md's paths so far."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def _render() -> bytes:
    spec = importlib.util.spec_from_file_location("gen_openapi", REPO / "scripts" / "gen_openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: bytes = module.render()
    return rendered


def test_committed_openapi_matches_the_code() -> None:
    committed = (REPO / "docs" / "openapi.json").read_bytes()
    assert committed == _render(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_openapi_documents_auth_and_me_with_error_shape() -> None:
    doc = orjson.loads(_render())
    paths = doc["paths"]
    for path in (
        "/api/v1/auth/signup",
        "/api/v1/auth/signup/verify",
        "/api/v1/auth/signup/complete",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/password-reset",
        "/api/v1/auth/password-reset/verify",
        "/api/v1/auth/password-reset/complete",
        "/api/v1/me",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    assert paths["/api/v1/auth/signup"]["post"]["responses"]["202"]
    assert paths["/api/v1/auth/signup/complete"]["post"]["responses"]["409"]["content"]["application/json"]
    assert "ErrorResponse" in doc["components"]["schemas"]
    assert set(paths["/api/v1/me"]) == {"get", "patch"}
