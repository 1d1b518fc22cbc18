"""Token counting the way the OpenAI API bills a chat request, offline.

The BPE rank files ship in `proxy/data/` and are loaded from disk with their sha256 checked;
tiktoken's own loader is never asked for them (it would try to download). One `TokenCounter`
per (encoding, chat format) is built and cached per process.

What a request costs, as measured against `usage.prompt_tokens` of recorded exchanges
(tests/test_tokens.py walks them):
- every message: `<|im_start|>role<|im_sep|>content<|im_end|>`, i.e. 3 + role + content
  (+ 1 + name when a `name` is given); the reply primer adds 3 (2 for o3/o4/gpt-5);
- tool schemas: rendered into a hidden system text, `# Tools` / `## functions` / a TypeScript
  `namespace functions { ... }` (see `render_tools`), plus small per-request constants;
- an assistant tool call: its function name and its arguments re-serialised compactly;
  a tool result: its content plus the name of the function it answers;
- an image part: a fixed cost per detail level (`low` = base, `high`/`auto` = base plus
  per-tile cost over 512 px tiles); when the size is unknown, 1024x1024 is assumed.
The constants of `ChatFormat` that are not documented by OpenAI were fitted on recorded
exchanges; they are stated there, not hidden in the arithmetic.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import tiktoken

from proxy.tool_text import count_nested_descriptions, render_tools

DATA_DIR = Path(__file__).resolve().parent / "data"

O200K = "o200k_base"
CL100K = "cl100k_base"

_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    name: str
    file: str
    sha256: str
    pattern: str
    special_tokens: Mapping[str, int]


# Patterns and special tokens as in tiktoken_ext/openai_public.py; hashes as tiktoken checks.
ENCODINGS: dict[str, EncodingSpec] = {
    O200K: EncodingSpec(
        O200K,
        "o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    CL100K: EncodingSpec(
        CL100K,
        "cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}


class TokenizerDataError(RuntimeError):
    """A packaged rank file is missing or does not match its published sha256."""


def load_ranks(spec: EncodingSpec, directory: Path = DATA_DIR) -> dict[bytes, int]:
    """The BPE ranks of `spec`, read from disk and verified; never from the network."""
    path = directory / spec.file
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TokenizerDataError(f"{path}: {exc.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise TokenizerDataError(f"{path}: sha256 {digest} != expected {spec.sha256}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@cache
def get_encoding(name: str) -> tiktoken.Encoding:
    spec = ENCODINGS[name]
    return tiktoken.Encoding(
        spec.name,
        pat_str=spec.pattern,
        mergeable_ranks=load_ranks(spec),
        special_tokens=dict(spec.special_tokens),
    )


_CL100K_MODELS = re.compile(r"^(gpt-4(?![o.\d])|gpt-4-|gpt-3\.5|text-embedding-(3|ada))")


def encoding_name_for_model(model: str | None) -> str:
    """cl100k_base for gpt-4 / gpt-3.5 / text-embedding-3; o200k_base for everything else
    (gpt-4o, gpt-4.1, o-series, gpt-5 and models we do not know)."""
    bare = (model or "").lower().rpartition("/")[2]
    return CL100K if _CL100K_MODELS.match(bare) else O200K


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

# A picture whose size we cannot read is assumed to be this big (4 tiles at `high`).
DEFAULT_IMAGE_SIZE = (1024, 1024)


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
                return len(self.encoding.encode_ordinary(text))
            found = self._long_memo.get(text)
            if found is None:
                if self._long_chars + len(text) > _LONG_MEMO_CHARS:
                    self._long_memo.clear()
                    self._long_chars = 0
                found = self._long_memo[text] = len(self.encoding.encode_ordinary(text))
                self._long_chars += len(text)
            return found
        found = self._memo.get(text)
        if found is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[text] = len(self.encoding.encode_ordinary(text))
        return found

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
        strict = sum(1 for t in functions if _function(t).get("strict") is True)
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


def _function(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function")
    return function if isinstance(function, Mapping) else {}


def image_tiles(width: int, height: int) -> int:
    """512 px tiles after fitting into 2048x2048 and shrinking the short side to 768."""
    if width <= 0 or height <= 0:
        width, height = DEFAULT_IMAGE_SIZE
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return math.ceil(w / 512) * math.ceil(h / 512)


_DATA_URL = re.compile(r"^data:image/[\w.+-]+;base64,")
# Enough base64 for the header of PNG, GIF and WebP, and of most JPEGs' frame marker.
_SNIFF_CHARS = 87384


def image_size(url: str) -> tuple[int, int] | None:
    """Width and height of an inline (data: URL) PNG, GIF, WebP or JPEG; None otherwise."""
    match = _DATA_URL.match(url)
    if match is None:
        return None
    chunk = url[match.end() : match.end() + _SNIFF_CHARS]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        head = base64.b64decode(chunk)
    except ValueError:
        return None
    return _sniff_size(head)


def _sniff_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(
                head[27:30], "little"
            )
        if kind == b"VP8 ":
            return (
                int.from_bytes(head[26:28], "little") & 0x3FFF,
                int.from_bytes(head[28:30], "little") & 0x3FFF,
            )
        if kind == b"VP8L":
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        length = int.from_bytes(head[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(head[at + 5 : at + 7], "big")
            width = int.from_bytes(head[at + 7 : at + 9], "big")
            return width, height
        at += 2 + length
    return None
