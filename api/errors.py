"""Exception handlers: every error leaves in the API.md shape ``{"error": {code, message, details}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from api.codec import error_body
from api.logs import request_id_var
from api.overload import SHED, as_unavailable
from api.responses import encoded
from domain.errors import DomainError, MalformedBody, MethodNotAllowed, NotFound, ValidationFailed

_STATUS_ERRORS: dict[int, type[DomainError]] = {404: NotFound, 405: MethodNotAllowed}


def error_response(request: Request, err: DomainError) -> Response:
    """The error encoded once, in the negotiated format (the same helper as every route's answer)."""
    headers: dict[str, str] = {}
    retry_after = getattr(err, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return encoded(request, error_body(err, request_id_var.get()), err.http_status, headers)


def allowed_methods(routes: list[BaseRoute], path: str) -> str:
    """Every method of every route on this path (the router's 405 names only the first route's methods)."""
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return ", ".join(sorted(methods))


def _reason(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    msg = str(error.get("msg", "is invalid"))
    return msg[0].lower() + msg[1:] if msg else "is invalid"


def validation_to_domain(exc: RequestValidationError) -> DomainError:
    errors = list(exc.errors())
    if any(e.get("type") in ("json_invalid", "json_type") for e in errors):
        return MalformedBody("The JSON body could not be parsed.")
    fields: dict[str, str] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
        if e.get("type") == "model_attributes_type" or (not loc and e.get("type") in ("dict_type", "model_type")):
            return MalformedBody("The request body must be an object.")
        fields[".".join(loc) or "body"] = _reason(e)
    return ValidationFailed(fields)


def install(app: FastAPI) -> None:
    async def on_domain(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return error_response(request, exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(request, validation_to_domain(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        cls = _STATUS_ERRORS.get(exc.status_code)
        if cls is not None:
            err: DomainError = cls()
        elif exc.status_code == 400:  # FastAPI could not parse the body (invalid UTF-8, nesting too deep)
            err = MalformedBody("The request body could not be parsed.")
        else:
            err = DomainError(str(exc.detail), code="http_error")
            err.http_status = exc.status_code
        response = error_response(request, err)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = allowed_methods(request.app.router.routes, request.url.path)
        return response

    async def on_overload(request: Request, exc: Exception) -> Response:
        err = as_unavailable(exc)  # a pool past its deadline, an unreachable PostgreSQL, Redis or Ray: 503
        if err is None:
            raise exc  # a bug that happens to be an OSError (a missing file): the codec makes it a logged 500
        return error_response(request, err)

    app.add_exception_handler(DomainError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for shed in SHED:
        app.add_exception_handler(shed, on_overload)
