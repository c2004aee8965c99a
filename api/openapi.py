"""The OpenAPI document, complete, and Swagger UI served by the app itself (no CDN, no internet).

``document(app)`` is FastAPI's document of the routes (paths, parameters, security, and what each route declares
with ``api/contract.py operation``: its operationId, its body and answers as references to the wire structs), whose
``components/schemas`` are generated from those structs (domain/wire) with ``msgspec.json.schema_components``:
the structs are the one definition of every object. It is completed with what every operation can answer whatever
its route declares, so that the document grows with each route:
- 500 ``internal`` and 503 ``unavailable`` (with ``Retry-After``) everywhere; 401 wherever a token is accepted;
  400 (malformed body), 413 and 415 on every method that carries a body; 422 wherever there is a body or a
  parameter, in our error shape (FastAPI's own ``HTTPValidationError`` is not what we send);
- ``application/msgpack`` next to ``application/json`` for every request and response body (same schema);
- ``Retry-After`` on 429 and 503 and ``X-Request-Id`` on every response.

``/openapi.json`` is always JSON (``api/codec.py`` ``json_only_paths``). ``/docs`` is Swagger UI whose script,
stylesheet and icon come from the ``fastapi-offline`` package (Swagger UI 5, Apache-2.0; the package MIT) under
``/docs/assets``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.codec import JSON, MSGPACK
from api.contract import SCHEMAS, STATUS_DESCRIPTIONS
from domain.wire import schema

OPENAPI_URL = "/openapi.json"
DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png")

BODY_METHODS = {"post", "put", "patch", "delete"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again",
    "schema": {"type": "integer", "minimum": 1},
    "required": True,
}
REQUEST_ID = {
    "description": "This request's id (the `X-Request-Id` sent, or a new one); it names the request in our logs",
    "schema": {"type": "string"},
}


def _error(status: int) -> dict[str, Any]:
    return {"description": STATUS_DESCRIPTIONS.get(status, "Error"), "content": {JSON: {"schema": dict(ERROR_REF)}}}


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get(JSON, {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))


def _both_media_types(content: dict[str, Any]) -> None:
    if JSON in content and MSGPACK not in content:
        content[MSGPACK] = copy.deepcopy(content[JSON])


def complete_operation(method: str, op: dict[str, Any]) -> None:
    if "security" in op:  # FastAPI adds the bearer scheme again where a route also declares it: once each
        unique: list[dict[str, Any]] = []
        for requirement in op["security"]:
            if requirement not in unique:
                unique.append(requirement)
        op["security"] = unique
    responses: dict[str, Any] = op.setdefault("responses", {})
    statuses = {500, 503}
    if method in BODY_METHODS:
        statuses |= {400, 413, 415}
    if "requestBody" in op or op.get("parameters"):
        statuses.add(422)
    if op.get("security"):
        statuses.add(401)
    for status in sorted(statuses):
        if str(status) not in responses or (status == 422 and _is_fastapi_validation_error(responses["422"])):
            responses[str(status)] = _error(status)
    for key, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-Id"] = REQUEST_ID
        if key in ("429", "503"):
            headers["Retry-After"] = RETRY_AFTER
        if "content" in response:
            _both_media_types(response["content"])
    if "requestBody" in op:
        _both_media_types(op["requestBody"]["content"])


def document(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        openapi_version=app.openapi_version,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    ordered = sorted(SCHEMAS, key=lambda cls: cls.__name__)  # a stable document
    _, components = schema.components(ordered, ref_template="#/components/schemas/{name}")
    schemas.update(components)
    for item in doc.get("paths", {}).values():
        for method, op in item.items():
            complete_operation(method, op)
    return doc


def install(app: FastAPI) -> None:
    """``app.openapi`` builds (once) the completed document; ``/docs`` and its assets are served from here.
    The app is created with ``docs_url=None`` and ``openapi_url=OPENAPI_URL``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_URL,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the validator's site
        )
