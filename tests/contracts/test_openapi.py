"""The committed OpenAPI document is what the code serves, and it covers API.md's paths so far."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------ the contract every operation keeps (issue 20)

OPERATION_ID = re.compile(r"^[a-z][A-Za-z0-9]{2,40}$")
METHODS = {"get", "put", "post", "patch", "delete"}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in doc["paths"].items() for method, op in item.items() if method in METHODS
    ]


def _walk(node: Any, path: str = "$") -> list[tuple[str, Any]]:
    """Every (JSON path, schema object) under ``node``."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}[{i}]")
    return found


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property schema admits (through anyOf/oneOf; a $ref counts as object)."""
    if "$ref" in schema:
        return {"object"}
    if "type" in schema:
        kind = schema["type"]
        return set(kind) if isinstance(kind, list) else {kind}
    out: set[str] = set()
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            out |= _types(option)
    return out


def _properties(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, property name, schema) of every object property in components and inline schemas."""
    found = []
    for where, node in _walk(doc):
        for name, prop in (node.get("properties") or {}).items() if isinstance(node.get("properties"), dict) else []:
            if isinstance(prop, dict):
                found.append((where, name, prop))
    return found


def test_every_operation_has_a_short_explicit_unique_operation_id() -> None:
    doc = orjson.loads(_render())
    ids = []
    for path, method, op in _operations(doc):
        operation_id = op.get("operationId", "")
        assert OPERATION_ID.match(operation_id), (method, path, operation_id)
        ids.append(operation_id)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_ids_are_strings_everywhere_path_parameters_included() -> None:
    """A 64-bit id as a JSON number loses digits in JavaScript (388465223817773056 becomes ...060): every id, in a
    path, a query, a body or an answer, is a string."""
    doc = orjson.loads(_render())
    for path, method, op in _operations(doc):
        for parameter in op.get("parameters", []):
            if parameter["name"] == "id" or parameter["name"].endswith("_id"):
                assert _types(parameter["schema"]) == {"string"}, (method, path, parameter)
    for where, name, prop in _properties(doc):
        if name == "id" or name.endswith(("_id", "_ids")) or name in ("reply_to", "up_to_id"):
            admitted = _types(prop.get("items", prop)) if prop.get("type") == "array" else _types(prop)
            assert "integer" not in admitted and "number" not in admitted, (where, name, prop)


def test_every_time_is_a_date_time() -> None:
    doc = orjson.loads(_render())
    times = [(where, name, prop) for where, name, prop in _properties(doc) if name.endswith("_at") or name == "at"]
    assert times, "no time properties found: the walk is broken"
    for where, name, prop in times:
        options = [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]
        assert any(o.get("format") == "date-time" for o in options), (where, name, prop)


def test_components_are_the_wire_structs() -> None:
    """Every schema the document names is generated from a msgspec struct (domain/wire), none from pydantic."""
    from api.contract import SCHEMAS

    doc = orjson.loads(_render())
    refs = {node["$ref"].rsplit("/", 1)[1] for _, node in _walk(doc["paths"]) if "$ref" in node}
    structs = {cls.__name__ for cls in SCHEMAS}
    assert refs <= set(doc["components"]["schemas"])
    assert refs <= structs | {name for name in doc["components"]["schemas"] if _is_nested_of(doc, structs, name)}
    for name, schema in doc["components"]["schemas"].items():
        assert "title" not in schema or schema["title"] == name, (name, "a pydantic-made schema")


def _is_nested_of(doc: dict[str, Any], structs: set[str], name: str) -> bool:
    """A component that a struct's schema refers to (msgspec emits the structs a struct contains as components)."""
    for struct in structs:
        schema = doc["components"]["schemas"].get(struct, {})
        if any(node.get("$ref", "").endswith(f"/{name}") for _, node in _walk(schema)):
            return True
    return False
