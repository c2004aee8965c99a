"""HTTP and the wire models (domain/wire): request bodies decoded once into their inbound structs, responses
encoded from the outbound ones, and what each operation says in OpenAPI, generated from the same structs.

A route declares itself with ``operation(...)`` (its short ``operationId``, the struct it answers, its body
struct, the error statuses it adds) and takes its body with ``body(Struct)``; api/openapi.py turns every struct
named so into ``components/schemas`` with ``msgspec.json.schema_components``. Path ids are ints in the code and
strings in the document (``PathId``): a JavaScript client must never hold a 64-bit id as a number.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar

import msgspec
from fastapi import Depends, Request
from pydantic import BeforeValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from api.codec import JSON
from domain.errors import MalformedBody, NotFound, ValidationFailed
from domain.wire.errors import ErrorResponse, field_error

T = TypeVar("T")

MAX_ID = (1 << 63) - 1
ID_PATTERN = r"^[0-9]{1,19}$"
OPERATION_ID = re.compile(r"^[a-z][A-Za-z0-9]{2,40}$")

# Every struct an operation names; api/openapi.py makes components of them (and of what they refer to).
SCHEMAS: set[type[msgspec.Struct]] = {ErrorResponse}


def _path_id(value: Any) -> int:
    """A path id: 1-19 digits (else 422, as the document's pattern says); one that cannot exist (0, past 64 bits) is
    a 404, as one that does not."""
    if not (isinstance(value, str) and value.isdigit() and value.isascii() and len(value) <= 19):
        raise PydanticCustomError("id", "must be an id: 1-19 digits")
    number = int(value)
    if not 0 < number <= MAX_ID:
        raise NotFound()
    return number


# A path id: an int for the route, a decimal string in the document (a JavaScript client must not hold a 64-bit id
# as a number). Use as ``Annotated[PathId, Path(description="A post id")]``.
PathId = Annotated[int, BeforeValidator(_path_id), WithJsonSchema({"type": "string", "pattern": ID_PATTERN})]


STATUS_DESCRIPTIONS: dict[int, str] = {
    400: "Malformed body (`malformed_body`)",
    401: "Missing, invalid, expired or revoked credentials (`unauthenticated`, the reason in `details.reason`)",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone (`flow_expired`)",
    413: "Body too large (`payload_too_large`)",
    415: "Body is neither JSON nor MessagePack (`unsupported_media_type`)",
    422: "Validation failed; `details.fields` maps each wire field to its reason",
    429: "Rate limited (`rate_limited`); see the `Retry-After` header",
    500: "Internal error (`internal`); `details.request_id` names the request in the server's logs",
    503: "Temporarily unavailable (`unavailable`): overloaded or a dependency is down; see the `Retry-After` header",
}


def ref(cls: type[msgspec.Struct]) -> dict[str, str]:
    SCHEMAS.add(cls)
    return {"$ref": f"#/components/schemas/{cls.__name__}"}


def _content(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return {JSON: {"schema": ref(cls)}}


def error_response(status: int) -> dict[str, Any]:
    return {"description": STATUS_DESCRIPTIONS.get(status, "Error"), "content": _content(ErrorResponse)}


def operation(
    operation_id: str,
    *,
    ok: type[msgspec.Struct] | None = None,
    status: int = 200,
    description: str = "",
    request: type[msgspec.Struct] | None = None,
    also: Mapping[int, tuple[type[msgspec.Struct] | None, str]] | None = None,
    errors: Iterable[int] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``router.get/post/...`` for one operation: its ``operationId`` (short, camelCase:
    ``getPost``), its success answer (``ok``, with ``status`` and ``description``), ``also`` other successes
    (status -> struct and description), its request body struct, and the error statuses it adds to those every
    operation has (api/openapi.py adds 500, 503, and 400/401/413/415/422 where they apply)."""
    if not OPERATION_ID.match(operation_id):
        raise ValueError(f"operationId {operation_id!r} is not short camelCase")
    responses: dict[str, Any] = {}
    if ok is None:
        responses[str(status)] = {"description": description or "Done"}
    else:
        responses[str(status)] = {"description": description or ok.__name__, "content": _content(ok)}
    for code, (cls, text) in (also or {}).items():
        responses[str(code)] = {"description": text} if cls is None else {"description": text, "content": _content(cls)}
    for code in errors:
        responses[str(code)] = error_response(code)
    openapi_extra: dict[str, Any] = {"responses": responses, **(extra or {})}
    if request is not None:
        openapi_extra["requestBody"] = {"required": True, "content": _content(request)}
    return {
        "operation_id": operation_id,
        "status_code": status,
        "response_model": None,
        "openapi_extra": openapi_extra,
    }


# ------------------------------------------------------------ request bodies


def _whole_numbers(value: Any) -> Any:
    """A float with no fractional part as an int: JSON Schema's ``integer`` admits ``382197.0`` (so does a client
    that only has floats), and an int is accepted where a float is wanted."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _all_errors(obj: dict[str, Any], cls: type[msgspec.Struct]) -> dict[str, str]:
    """Every bad field of a body at once (msgspec stops at the first): unknown, missing, or of the wrong shape."""
    fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
    errors: dict[str, str] = {}
    for name in obj:
        if name not in fields:
            errors[str(name)] = "is not a known field"
    hints = msgspec.inspect.type_info(cls)
    assert isinstance(hints, msgspec.inspect.StructType)
    for info in hints.fields:
        name = info.encode_name
        if name not in obj:
            if info.required:
                errors[name] = "is required"
            continue
        if _has_nul(obj[name]):
            errors[name] = "must not contain NUL characters"
            continue
        try:
            msgspec.convert({name: obj[name]}, _single(cls, info.name), strict=True)
        except msgspec.ValidationError as exc:
            errors[name] = field_error(exc)[1]
    return errors


_SINGLES: dict[tuple[type[msgspec.Struct], str], type[msgspec.Struct]] = {}


def _single(cls: type[msgspec.Struct], attr: str) -> type[msgspec.Struct]:
    """A struct of ``cls``'s one field ``attr`` (its type, constraints and wire name), to check it alone."""
    made = _SINGLES.get((cls, attr))
    if made is None:
        (field,) = [f for f in msgspec.structs.fields(cls) if f.name == attr]
        annotation = typing.get_type_hints(cls, include_extras=True)[attr]
        made = msgspec.defstruct(
            f"{cls.__name__}_{attr}",
            [(attr, annotation, msgspec.field(name=field.encode_name))],
            kw_only=True,
        )
        _SINGLES[(cls, attr)] = made
    return made


def decode_body(raw: bytes, cls: type[T]) -> T:
    """A JSON body as ``cls`` (MessagePack bodies reach the app as JSON: api/codec.py): 400 when it is not a JSON
    object, 422 naming every bad field, and no string may hold a NUL (PostgreSQL text cannot store one)."""
    if not raw:
        raise ValidationFailed({"body": "is required"})
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # invalid UTF-8 in a string is a ValueError of its own
        raise MalformedBody("The JSON body could not be parsed.") from None
    except RecursionError:
        raise MalformedBody("The JSON body is nested too deeply.") from None
    if not isinstance(obj, dict):
        raise MalformedBody("The request body must be an object.")
    obj = _whole_numbers(obj)
    try:
        value = msgspec.convert(obj, cls, strict=True)
    except msgspec.ValidationError:
        raise ValidationFailed(_all_errors(obj, cls)) from None  # type: ignore[arg-type]
    if _has_nul(obj):
        raise ValidationFailed(_all_errors(obj, cls) or {"body": "must not contain NUL characters"})  # type: ignore[arg-type]
    return value


def body(cls: type[T]) -> Any:
    """A FastAPI dependency that is the request body decoded into ``cls`` (``decode_body``)."""

    async def read(request: Request) -> T:
        return decode_body(await request.body(), cls)

    return Depends(read)
