"""The hidden text that a chat request's tool schemas become, for counting their tokens.

OpenAI renders function schemas as a TypeScript namespace in a system turn. This follows the
renderer of OpenAI's open harmony format (gpt-oss) where our recorded usage agrees with it:
no titles, descriptions verbatim, `$ref` resolved, `default` as a trailing comment, nested
objects indented two spaces. See proxy.tokens for the constants around it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

_HEADER = "# Tools\n\n## functions\n\nnamespace functions {\n\n"
_MAX_DEPTH = 8


def render_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    lines = [_HEADER.rstrip("\n"), ""]
    for tool in tools:
        function = function_of(tool)
        description = function.get("description")
        if description:
            lines.append(f"// {description}")
        params = function.get("parameters")
        name = function.get("name") or ""
        if isinstance(params, Mapping) and params.get("properties"):
            lines.append(f"type {name} = (_: {{")
            lines.append(_properties(params, "", params, 0))
            lines.append("}) => any;")
        else:
            lines.append(f"type {name} = () => any;")
        lines.append("")
    lines.append("} // namespace functions")
    return "\n".join(lines)


def _properties(schema: Mapping[str, Any], indent: str, root: Mapping[str, Any], depth: int) -> str:
    required = schema.get("required") or ()
    lines: list[str] = []
    properties = schema.get("properties")
    for key, value in properties.items() if isinstance(properties, Mapping) else ():
        prop = _resolve(value, root)
        description = prop.get("description")
        if description:
            lines.append(f"{indent}// {description}")
        mark = "" if key in required else "?"
        line = f"{indent}{key}{mark}: {_type(prop, indent, root, depth)},"
        if "default" in prop:
            line += f" // default: {orjson.dumps(prop['default']).decode()}"
        lines.append(line)
    return "\n".join(lines)


def _type(schema: Mapping[str, Any], indent: str, root: Mapping[str, Any], depth: int) -> str:
    schema = _resolve(schema, root)
    if depth > _MAX_DEPTH:
        return "any"
    kind = schema.get("type")
    if isinstance(schema.get("enum"), list):
        return " | ".join(orjson.dumps(v).decode() for v in schema["enum"])
    variants = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(variants, list) and kind is None:
        return " | ".join(
            _type(v, indent, root, depth + 1) for v in variants if isinstance(v, Mapping)
        )
    if isinstance(kind, list):
        return " | ".join("number" if k == "integer" else str(k) for k in kind)
    if kind == "object":
        inner = _properties(schema, indent + "  ", root, depth + 1)
        return "{\n" + inner + "\n}" if inner else "object"
    if kind == "array":
        items = schema.get("items")
        inner = _type(items, indent, root, depth + 1) if isinstance(items, Mapping) else "any"
        return inner + "[]"
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    return "any"


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        found: Any = root
        for part in ref[2:].split("/"):
            found = found.get(part) if isinstance(found, Mapping) else None
        return found if isinstance(found, Mapping) else {}
    return schema


def count_nested_descriptions(tools: Sequence[Mapping[str, Any]]) -> int:
    """Described properties of objects nested below a function's top-level parameters."""
    total = 0
    for tool in tools:
        params = function_of(tool).get("parameters")
        if isinstance(params, Mapping):
            total += _nested(params, params, 0)
    return total


def _nested(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int) -> int:
    schema = _resolve(schema, root)
    if depth > _MAX_DEPTH:
        return 0
    total = 0
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for value in properties.values():
            if depth > 0 and _resolve(value, root).get("description"):
                total += 1
            total += _nested(value, root, depth + 1)
    items = schema.get("items")
    if isinstance(items, Mapping):
        total += _nested(items, root, depth)
    return total


def legacy_functions(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A request's legacy `functions` as the tools they are counted as (OpenAI renders
    both alike); [] when it has none."""
    functions = body.get("functions")
    if not isinstance(functions, list):
        return []
    return [{"type": "function", "function": f} for f in functions if isinstance(f, Mapping)]


def function_of(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function")
    return function if isinstance(function, Mapping) else {}
