"""`TokenCounter`: what text, messages, tool schemas and whole requests cost for one model
family (its encoding and `ChatFormat`); one per model family, cached per process."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

import orjson
import tiktoken

from proxy.tokens._encodings import CL100K, encoding_name_for_model, get_encoding
from proxy.tokens._images import DEFAULT_IMAGE_SIZE, image_size, image_tiles
from proxy.tokens._tool_text import (
    count_nested_descriptions,
    function_of,
    legacy_functions,
    render_tools,
)


@dataclass(frozen=True, slots=True)
class ChatFormat:
    """The hidden tokens around a chat request. Values marked *fitted* were fitted on the
    recorded exchanges in ../shared/recorded (see tests/test_tokens.py); the rest are
    OpenAI's documented figures."""

    per_message: int = 3
    per_name: int = 1
    reply_primer: int = 3
    # fitted: tools text (header + namespace) costs this much beyond its own tokens
    tools_base: int = 3
    tools_per_extra_tool: int = -1  # fitted
    tools_per_strict_tool: int = -1  # fitted
    tools_with_system: int = -2  # fitted: the tools share the client's system turn
    # fitted (one exchange): described nested properties render longer than our TypeScript
    tools_per_nested_description: int = 4
    tool_call_message: int = -1  # fitted: an assistant message that carries tool calls
    tool_call: int = 7  # fitted: each call, beyond its name and compact arguments
    parallel_calls: int = 11  # fitted: a message with two or more calls
    tool_result: int = 7  # fitted: each tool message, beyond its content and function name
    image_base: int = 85
    image_tile: int = 170


_REASONING = re.compile(r"^(o[3-9]|gpt-5)")
_MINI_IMAGES = re.compile(r"^gpt-4o-mini")


@cache
def chat_format_for_model(model: str | None) -> ChatFormat:
    bare = (model or "").lower().rpartition("/")[2]
    fmt = ChatFormat()
    if encoding_name_for_model(model) == CL100K:
        # openai-chat-tokens' measurements for the cl100k models (functions, system reuse).
        fmt = replace(fmt, tools_per_extra_tool=0, tools_per_strict_tool=0, tools_with_system=-4)
    if _REASONING.match(bare):
        fmt = replace(fmt, reply_primer=2)
    if _MINI_IMAGES.match(bare):
        # gpt-4o-mini bills images at a multiple of gpt-4o's tile price.
        fmt = replace(fmt, image_base=2833, image_tile=5667)
    return fmt


# Counts of recurring text are remembered: short strings (headers, names, hints) and long
# ones that repeat every request (system prompts, rules, tool schemas), within a char budget.
_SHORT_TEXT = 256
_MEMO_LIMIT = 8192
_LONG_TEXT = 65536
_LONG_MEMO_CHARS = 4_000_000
# Text longer than EXACT_CHARS is counted exactly up to there and estimated beyond, from
# evenly spaced samples of the rest, so that one huge message costs bounded time (issue
# 13). tiktoken's BPE is superlinear on one long run of a character: a megabyte of "a"
# takes 0.4 s against 25 ms for prose, and a megabyte of spaces overflows its regex stack
# (a Rust panic). 32k characters are at least 8k tokens, past any budget's room for one
# page, so where a count decides something it stays exact.
EXACT_CHARS = 32_768
_SAMPLES = 8
_SAMPLE_CHARS = 2_048

class TokenCounter:
    """Counts text, messages, tool schemas and whole requests for one model family."""

    def __init__(self, encoding: tiktoken.Encoding, chat_format: ChatFormat) -> None:
        self.encoding = encoding
        self.format = chat_format
        self._memo: dict[str, int] = {}
        self._long_memo: dict[str, int] = {}
        self._long_chars = 0
        self._tools_memo: dict[bytes, int] = {}

    @property
    def name(self) -> str:
        return self.encoding.name

    def text(self, text: str, *, memo: bool = True) -> int:
        """Tokens of plain text. Special-token strings in user text count as text.
        `memo=False` for text that will not come again (e.g. a page counted at ingest)."""
        if len(text) > _SHORT_TEXT:
            if not memo or len(text) > _LONG_TEXT:
                return self._count(text)
            found = self._long_memo.get(text)
            if found is None:
                if self._long_chars + len(text) > _LONG_MEMO_CHARS:
                    self._long_memo.clear()
                    self._long_chars = 0
                found = self._long_memo[text] = self._count(text)
                self._long_chars += len(text)
            return found
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[text] = len(self.encoding.encode_ordinary(text))
        return found

    def _count(self, text: str) -> int:
        """Exact up to EXACT_CHARS; beyond, the rest at the token rate of its samples."""
        encode = self.encoding.encode_ordinary
        if len(text) <= EXACT_CHARS + _SAMPLES * _SAMPLE_CHARS:
            return len(encode(text))
        rest = len(text) - EXACT_CHARS
        step = rest // _SAMPLES
        width = _SAMPLE_CHARS
        sampled = sum(
            len(encode(text[start : start + width]))
            for start in range(EXACT_CHARS, EXACT_CHARS + _SAMPLES * step, step)
        )
        estimate = -(-sampled * rest // (width * _SAMPLES))  # rounded up
        return len(encode(text[:EXACT_CHARS])) + estimate

    def content(self, content: Any) -> int:
        """Tokens of a message's `content`: a string, or a list of parts."""
        if content is None:
            return 0
        if isinstance(content, str):
            return self.text(content)
        total = 0
        if isinstance(content, list):
            for part in content:
                total += self.part(part)
        return total

    def part(self, part: Any) -> int:
        if not isinstance(part, Mapping):
            return 0
        kind = part.get("type")
        if kind == "text" or kind == "input_text":
            return self.text(str(part.get("text") or ""))
        if kind == "refusal":
            return self.text(str(part.get("refusal") or ""))
        if kind == "image_url":
            image = part.get("image_url")
            if isinstance(image, str):
                return self.image(image)
            if isinstance(image, Mapping):
                return self.image(str(image.get("url") or ""), str(image.get("detail") or "auto"))
        # input_audio and file parts: no recorded usage to calibrate against; not counted.
        return 0

    def image(self, url: str, detail: str = "auto") -> int:
        fmt = self.format
        if detail == "low":
            return fmt.image_base
        width, height = image_size(url) or DEFAULT_IMAGE_SIZE
        return fmt.image_base + fmt.image_tile * image_tiles(width, height)

    def message(
        self, message: Mapping[str, Any], tool_names: Mapping[str, str] | None = None
    ) -> int:
        """Tokens of one message in a request. A tool result is billed with the name of the
        function it answers: pass the call-id -> name map of the assistant turns before it."""
        fmt = self.format
        role = str(message.get("role") or "")
        calls = message.get("tool_calls")
        if role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            function = (tool_names or {}).get(call_id, "")
            return fmt.tool_result + self.text(function) + self.content(message.get("content"))
        if calls and isinstance(calls, list):
            total = fmt.tool_call_message + self.content(message.get("content"))
            for call in calls:
                total += self.tool_call(call)
            if len(calls) > 1:
                total += fmt.parallel_calls
            return total
        total = fmt.per_message + self.text(role) + self.content(message.get("content"))
        name = message.get("name")
        if name:
            total += fmt.per_name + self.text(str(name))
        return total

    def tool_call(self, call: Any) -> int:
        function = call.get("function") if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping):
            return self.format.tool_call
        name = str(function.get("name") or "")
        return self.format.tool_call + self.text(name) + self.text(compact_arguments(function))

    def messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Tokens of a message list, reply primer included (tools not included)."""
        names: dict[str, str] = {}
        total = self.format.reply_primer
        for message in messages:
            note_tool_names(message, names)
            total += self.message(message, names)
        return total

    def tools(self, tools: Sequence[Mapping[str, Any]] | None, *, has_system: bool) -> int:
        """Tokens the tool schemas add to a request (0 without tools)."""
        functions = [t for t in tools or () if isinstance(t, Mapping)]
        if not functions:
            return 0
        # Key order matters to the rendering, so the key keeps it.
        key = orjson.dumps(functions) + (b"S" if has_system else b"")
        found = self._tools_memo.get(key)
        if found is None:
            if len(self._tools_memo) >= _MEMO_LIMIT:
                self._tools_memo.clear()
            found = self._tools_memo[key] = self._tools(functions, has_system)
        return found

    def _tools(self, functions: list[Mapping[str, Any]], has_system: bool) -> int:
        fmt = self.format
        strict = sum(1 for t in functions if function_of(t).get("strict") is True)
        total = self.text(render_tools(functions)) + fmt.tools_base
        total += fmt.tools_per_extra_tool * (len(functions) - 1)
        total += fmt.tools_per_strict_tool * strict
        total += fmt.tools_per_nested_description * count_nested_descriptions(functions)
        if has_system:
            total += fmt.tools_with_system
        return total

    def request(self, body: Mapping[str, Any]) -> int:
        """Prompt tokens of a whole chat-completions body: messages plus tool schemas."""
        messages = [m for m in body.get("messages") or () if isinstance(m, Mapping)]
        tools = body.get("tools")
        has_system = any(m.get("role") in ("system", "developer") for m in messages)
        tool_list = tools if isinstance(tools, list) else None
        legacy = legacy_functions(body)
        if legacy:
            tool_list = [*(tool_list or ()), *legacy]
        return self.messages(messages) + self.tools(tool_list, has_system=has_system)


@cache
def counter_for_model(model: str | None) -> TokenCounter:
    return TokenCounter(get_encoding(encoding_name_for_model(model)), chat_format_for_model(model))


def note_tool_names(message: Mapping[str, Any], names: dict[str, str]) -> None:
    """Add the call-id -> function name pairs of an assistant message to `names`."""
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            function = call.get("function")
            if isinstance(function, Mapping) and call.get("id") is not None:
                names[str(call["id"])] = str(function.get("name") or "")


def compact_arguments(function: Mapping[str, Any]) -> str:
    """Arguments as the model sees them: JSON re-serialised without spaces when it parses."""
    raw = function.get("arguments")
    if not isinstance(raw, str):
        return orjson.dumps(raw).decode() if raw is not None else ""
    try:
        return orjson.dumps(orjson.loads(raw)).decode()
    except orjson.JSONDecodeError:
        return raw
