"""The offline provider behind `--mock`: deterministic answers, no key, no network."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from typing import Any

from orchestrate._errors import StepTimeout
from orchestrate._result import Usage
from orchestrate.providers._base import LLMRequest, LLMResponse, RetryCallback, TokenCallback


class MockProvider:
    """Answers with the step's `mock:` text, a schema's minimal instance, or an echo.

    `latency` (seconds) simulates a model's response time for the benchmarks; a latency
    longer than the request's `timeout` times out like a real provider would.
    """

    name = "mock"

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency

    async def complete(
        self,
        request: LLMRequest,
        *,
        on_token: TokenCallback | None = None,
        on_retry: RetryCallback | None = None,
    ) -> LLMResponse:
        text = mock_reply(request)
        if self.latency > request.timeout:
            await asyncio.sleep(request.timeout)
            raise StepTimeout(f"no answer within {request.timeout:g} s")
        if on_token is not None and request.stream:
            await _stream(text, self.latency, on_token)
        elif self.latency:
            await asyncio.sleep(self.latency)
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return LLMResponse(
            text=text,
            usage=Usage(_tokens(prompt_chars), _tokens(len(text))),
            model=request.model,
            response_id="mock-" + hashlib.sha256(text.encode()).hexdigest()[:12],
            finish_reason="stop",
        )

    async def aclose(self) -> None:
        return None


def _tokens(chars: int) -> int:
    """Roughly four characters a token, as for English text."""
    return math.ceil(chars / 4)


async def _stream(text: str, latency: float, on_token: TokenCallback) -> None:
    pieces = re.findall(r"\S+\s*|\s+", text) or [""]
    pause = latency / len(pieces)
    for piece in pieces:
        if pause:
            await asyncio.sleep(pause)
        on_token(piece)


def mock_reply(request: LLMRequest) -> str:
    if request.mock_text is not None:
        return request.mock_text
    if request.schema is not None:
        return json.dumps(minimal_instance(request.schema, request.schema), ensure_ascii=False)
    echo = _echo(request)
    if request.json_mode:
        return json.dumps({"text": echo}, ensure_ascii=False)
    return echo


def _echo(request: LLMRequest) -> str:
    """A short text that shows which prompt it answers, the same for the same prompt."""
    prompt = request.messages[-1]["content"] if request.messages else ""
    words = " ".join(prompt.split())
    if len(words) > 80:
        words = words[:77].rstrip() + "..."
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return f"Mock reply {digest} to: {words}"


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
