"""JSON Schemas of the wire structs, as both API documents use them (docs/openapi.json, docs/asyncapi.yaml)."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import msgspec


def _clean(node: Any) -> Any:
    """Descriptions as written in docstrings, without their source indentation."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _clean(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def components(types: Iterable[Any], ref_template: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``msgspec.json.schema_components`` of ``types``: their schemas (references, in the order given) and the
    components they need."""
    schemas, found = msgspec.json.schema_components(list(types), ref_template=ref_template)
    return _clean(list(schemas)), _clean(found)
