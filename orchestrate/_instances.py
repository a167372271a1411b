"""A minimal instance of a JSON Schema: what the mock provider answers for a step's
`schema:`, and what bench/fake_openai.py answers a `json_schema` request with.

Standard library only, and nothing of orchestrate imported, so that the fake server can
load it from a checkout by a Python that has not installed orchestrate's dependencies.
"""

from __future__ import annotations

from typing import Any

# Below this depth an instance holds only what its schema requires, so that recursive
# schemas (a tree whose nodes hold nodes) end; past the hard limit it gives up with null.
_OPTIONAL_DEPTH = 3
_MAX_DEPTH = 32


def minimal_instance(schema: Any, root: Any, depth: int = 0) -> Any:
    """A small value that satisfies `schema`: its fields, one item per list."""
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    if "$ref" in schema:
        return minimal_instance(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    return _BUILDERS.get(kind, lambda s, r, d: None)(schema, root, depth)


def _resolve(ref: str, root: Any) -> Any:
    node = root
    for part in ref.removeprefix("#").removeprefix("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _object(schema: dict, root: Any, depth: int) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    return {
        name: minimal_instance(sub, root, depth + 1)
        for name, sub in schema.get("properties", {}).items()
        if name in required or depth < _OPTIONAL_DEPTH
    }


def _array(schema: dict, root: Any, depth: int) -> list[Any]:
    wanted = 1 if depth < _OPTIONAL_DEPTH else 0
    count = max(schema.get("minItems", 0), wanted) if schema.get("maxItems", 1) else 0
    return [minimal_instance(schema.get("items", {}), root, depth + 1) for _ in range(count)]


def _string(schema: dict, root: Any, depth: int) -> str:
    text = "mock"
    return text.ljust(schema.get("minLength", 0), "x")


def _number(schema: dict, root: Any, depth: int) -> int | float:
    value = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        value += 1
    return int(value) if schema.get("type") == "integer" else value


_BUILDERS = {
    "object": _object,
    "array": _array,
    "string": _string,
    "number": _number,
    "integer": _number,
    "boolean": lambda s, r, d: False,
    "null": lambda s, r, d: None,
}
