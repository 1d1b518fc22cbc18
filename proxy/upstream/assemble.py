"""Rebuild one assistant message from an upstream response, whatever its dialect.

`ChunkAccumulator` takes the parsed chunks of ONE streamed response
(`proxy.upstream.completion.assemble_response` does the same for a non-stream body). Both give an
`AssembledMessage` with tool calls in OpenAI's message shape, positions 0..n-1 in order of
first appearance, every call with a usable id, and an effective finish_reason. The
dialects are those of ../shared/recorded/SSE_FORMAT.md sections 2-7: Azure's empty
placeholder chunk, `role` repeated or null, `tool_calls: []`/null on text, headers whose
`arguments` is null, missing or already holding text, later fragments repeating
id/name/type (or sending them null or ""), no `index` (Mistral), indexes from 1 (Anthropic
compat), id "" (Gemini compat), finish_reason stop/eos/absent/repeated, usage anywhere,
reasoning deltas, and errors inside a chunk or as `event: error`.

Pure: no I/O, no clock. Synthesised ids hash `id_salt`, the response id and the call's
position, so they are stable in tests and distinct across loop iterations when the
caller passes a per-iteration salt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.errors import normalise_error_body
from proxy.upstream.sse import SSEEvent
from proxy.upstream.usage import Usage, extract_usage

__all__ = [
    "AssembledMessage",
    "ChunkAccumulator",
    "ChunkUpdate",
    "PartialToolCall",
    "ToolCallFragment",
    "effective_finish_reason",
    "primary_choice",
]

REASONING_KEYS = ("reasoning_content", "reasoning")
# Message fields worth sending back upstream with the assistant turn: Gemini's thought
# signatures and OpenRouter's reasoning details are rejected or lost otherwise.
REPLAY_KEYS = ("extra_content", "thought_signature", "reasoning_details")
_DELTA_KNOWN = frozenset(("role", "content", "refusal", "tool_calls", *REASONING_KEYS))
_TOP_KNOWN = frozenset(
    ("id", "object", "created", "model", "choices", "usage", "system_fingerprint", "error",
     "obfuscation")
)
# Delta fields of other message fields that stream in pieces.
_STREAMED_TEXT = {"function_call": ("arguments",), "audio": ("transcript", "data")}
_STOP_LIKE = frozenset(("stop", "eos", "eos_token", "end_turn", "tool_use", "tool_calls",
                        "function_call"))


@dataclass(slots=True)
class PartialToolCall:
    """One tool call as it is being assembled."""

    position: int  # 0-based, in order of first appearance
    id: str  # the id the client / the loop uses (synthesised when upstream gave none)
    name: str | None
    upstream_id: str | None  # what upstream sent, None when it sent nothing usable
    parts: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. Gemini's extra_content

    @property
    def arguments(self) -> str:
        return "".join(self.parts)

    def to_dict(self) -> dict[str, Any]:
        """OpenAI message shape; arguments never empty (clients json.loads them)."""
        call: dict[str, Any] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name or "", "arguments": self.arguments or "{}"},
        }
        call.update(self.extra)
        return call


@dataclass(slots=True)
class ToolCallFragment:
    call: PartialToolCall
    started: bool  # this fragment opened the call
    arguments: str  # argument text this fragment added


@dataclass(slots=True)
class ChunkUpdate:
    """What one chunk contributed (choice 0 only), normalised."""

    has_choice: bool = False  # False for Azure's placeholder and usage-only chunks
    content: str | None = None
    refusal: str | None = None
    reasoning: list[tuple[str, str]] = field(default_factory=list)  # (key, text)
    tool_calls: list[ToolCallFragment] = field(default_factory=list)
    delta_extra: dict[str, Any] = field(default_factory=dict)
    logprobs: Any = None
    finish_reason: str | None = None  # as sent in this chunk, if non-empty
    usage: Usage | None = None
    error: dict[str, Any] | None = None


@dataclass(slots=True)
class AssembledMessage:
    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    reasoning: str | None = None
    reasoning_key: str | None = None  # "reasoning_content" or "reasoning", as upstream sent
    refusal: str | None = None
    finish_reason: str | None = None  # effective: "tool_calls" whenever calls were made
    upstream_finish_reason: str | None = None  # as received (None when absent)
    usage: Usage | None = None
    id: str | None = None
    model: str | None = None
    created: int | None = None
    system_fingerprint: str | None = None
    error: dict[str, Any] | None = None  # OpenAI-shaped error object the upstream sent
    message_extra: dict[str, Any] = field(default_factory=dict)  # other message fields
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level fields
    # The content as the list of parts a non-stream answer held (Mistral's reasoning
    # models answer so): what its client resends; `content` is the text of its parts.
    parts: list[Any] | None = None
    id_map: dict[str, str] = field(default_factory=dict)  # synthesised id -> upstream's
    logprobs: Any = None  # a non-stream answer's choice's (assemble_response)

    def to_message(self, *, include_reasoning: bool | None = None) -> dict[str, Any]:
        """The assistant message to append to the upstream conversation.

        Reasoning is replayed by default only under `reasoning_content` (DeepSeek needs it
        back within a tool loop); strict servers such as Groq reject unknown fields.
        """
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if include_reasoning is None:
            include_reasoning = self.reasoning_key == "reasoning_content"
        if include_reasoning and self.reasoning and self.reasoning_key:
            message[self.reasoning_key] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        for key in REPLAY_KEYS:
            if key in self.message_extra:
                message[key] = self.message_extra[key]
        return message


def effective_finish_reason(raw: str | None, has_tool_calls: bool) -> str:
    """`tool_calls` whenever calls were made and upstream said stop/eos/nothing."""
    if has_tool_calls:
        return "tool_calls" if raw is None or raw in _STOP_LIKE else raw
    if raw is None or raw in _STOP_LIKE:
        return "stop"
    return raw


class ChunkAccumulator:
    """Feed the parsed chunks of one streamed response; `result()` at the end."""

    def __init__(self, *, id_salt: str = "") -> None:
        self._salt = id_salt
        self._calls: list[PartialToolCall] = []
        self._by_index: dict[int, PartialToolCall] = {}
        self._used_ids: set[str] = set()
        self._content: list[str] = []
        self._content_seen = False
        self._refusal: list[str] = []
        self._reasoning: dict[str, list[str]] = {}
        self._extra_delta: dict[str, Any] = {}
        self._finish: str | None = None
        self._meta: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}
        self.usage: Usage | None = None
        self.error: dict[str, Any] | None = None
        self.done = False  # [DONE] seen (only known through feed_event)
        self.id_map: dict[str, str] = {}

    @property
    def id(self) -> str | None:
        return self._meta.get("id")

    @property
    def model(self) -> str | None:
        return self._meta.get("model")

    @property
    def system_fingerprint(self) -> str | None:
        return self._meta.get("system_fingerprint")

    @property
    def extra(self) -> dict[str, Any]:
        """Top-level fields beyond the standard ones seen so far (read only)."""
        return self._extra

    @property
    def finished(self) -> bool:
        """A finish_reason, [DONE] or an error was seen: the response is complete."""
        return self._finish is not None or self.done or self.error is not None

    def feed_event(self, event: SSEEvent) -> ChunkUpdate | None:
        """Convenience for decoded events: comments are skipped, [DONE] noted, data fed."""
        if event.is_comment:
            return None
        if event.is_done:
            self.done = True
            return None
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            kind = "error" if event.event == "error" else "malformed event"
            data = {"error": {"message": f"upstream stream {kind}: {event.data[:500]}"}}
        if event.event == "error" and not (isinstance(data, dict) and data.get("error")):
            data = {"error": data if isinstance(data, dict) else {"message": str(data)}}
        if not isinstance(data, dict):
            return None
        return self.feed(data)

    def feed(self, chunk: Mapping[str, Any]) -> ChunkUpdate:
        update = ChunkUpdate()
        for key, value in chunk.items():
            if key in ("id", "model", "system_fingerprint"):
                if isinstance(value, str) and value and key not in self._meta:
                    self._meta[key] = value
            elif key == "created":
                if isinstance(value, int) and value and key not in self._meta:
                    self._meta[key] = value
            elif key not in _TOP_KNOWN and value is not None and value != "":
                self._extra[key] = value
        error = chunk.get("error")
        if error:
            update.error = _normalise_error(error)
            if self.error is None:
                self.error = update.error
        usage = extract_usage(chunk)
        if usage is not None:
            # Last one wins: Perplexity repeats a cumulative usage on every chunk.
            self.usage = update.usage = usage
        choice = primary_choice(chunk.get("choices"))
        if choice is not None:
            update.has_choice = True
            self._feed_choice(choice, update)
        return update

    @property
    def content_seen(self) -> bool:
        """Whether a chunk has carried `content` as a string (even ""): an upstream writing
        text says so in its first chunk; one calling tools sends `content: null` there."""
        return self._content_seen

    def _feed_choice(self, choice: Mapping[str, Any], update: ChunkUpdate) -> None:
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = choice.get("message")
        if isinstance(delta, dict):
            self._feed_delta(delta, update)
        update.logprobs = choice.get("logprobs")
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            update.finish_reason = finish
            if self._finish is None:
                self._finish = finish

    def _feed_delta(self, delta: Mapping[str, Any], update: ChunkUpdate) -> None:
        content = delta.get("content")
        if isinstance(content, list):
            content = parts_text(content)
        if isinstance(content, str):
            self._content_seen = True
            if content:
                self._content.append(content)
                update.content = content
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refusal.append(refusal)
            update.refusal = refusal
        for key in REASONING_KEYS:
            text = delta.get(key)
            if isinstance(text, str):
                self._reasoning.setdefault(key, [])
                if text:
                    self._reasoning[key].append(text)
                    update.reasoning.append((key, text))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            for raw in tool_calls:
                if isinstance(raw, dict):
                    update.tool_calls.append(self._add_fragment(raw))
        for key, value in delta.items():
            if key not in _DELTA_KNOWN and value is not None:
                update.delta_extra[key] = value
                self._merge_extra(key, value)

    def _merge_extra(self, key: str, value: Any) -> None:
        have = self._extra_delta.get(key)
        if key in _STREAMED_TEXT and isinstance(have, dict) and isinstance(value, dict):
            # A legacy function_call's arguments, an audio answer's transcript and data
            # come in pieces, as content does.
            for field_name, piece in value.items():
                if field_name in _STREAMED_TEXT[key] and isinstance(piece, str):
                    have[field_name] = str(have.get(field_name) or "") + piece
                else:
                    have[field_name] = piece
            return
        if isinstance(have, list) and isinstance(value, list):
            if key == "reasoning_details":
                _merge_reasoning_details(have, value)
            else:
                have.extend(value)
        elif isinstance(have, dict) and isinstance(value, dict):
            have.update(value)
        elif isinstance(value, list):
            # Copies: merging must not write into the upstream's chunk objects.
            self._extra_delta[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        else:
            self._extra_delta[key] = dict(value) if isinstance(value, dict) else value

    # --- tool calls ---------------------------------------------------------------------

    def _add_fragment(self, raw: Mapping[str, Any]) -> ToolCallFragment:
        function = raw.get("function")
        function = function if isinstance(function, dict) else {}
        index = raw.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        given_id = _non_empty(raw.get("id"))
        name = _non_empty(function.get("name"))
        arguments = function.get("arguments")
        if isinstance(arguments, dict | list):  # a few servers send parsed JSON
            arguments = orjson.dumps(arguments).decode()
        arguments = arguments if isinstance(arguments, str) else ""

        call = self._find_call(index, given_id, name)
        started = call is None
        if call is None:
            call = self._open_call(given_id, name)
            if index is not None:
                self._by_index[index] = call
        elif call.name is None and name is not None:
            call.name = name
        if arguments:
            call.parts.append(arguments)
        for key, value in raw.items():
            if key not in ("index", "id", "type", "function") and value is not None:
                call.extra[key] = value
        return ToolCallFragment(call, started, arguments)

    def _find_call(self, index: int | None, given_id: str | None,
                   name: str | None) -> PartialToolCall | None:
        if index is not None:
            call = self._by_index.get(index)
        else:
            # Mistral sends no index: a fragment belongs to the call in progress unless
            # it names a new one.
            call = self._calls[-1] if self._calls else None
        if call is None or name is None:
            return call  # a fragment without a name never opens a call
        if call.name is not None and name != call.name:
            return None
        # Same name again (kimi repeats id and name on every fragment): a new call only if
        # the current one is complete and the fragment says otherwise by id or by lacking
        # an index. Servers that send each parallel call whole at index 0 differ by id;
        # relays that stamp a fresh id on every fragment leave the arguments incomplete.
        if not _is_json(call.arguments):
            return call
        if given_id is not None and call.upstream_id is not None:
            return None if given_id != call.upstream_id else call
        return None if index is None and given_id is None else call

    def _open_call(self, given_id: str | None, name: str | None) -> PartialToolCall:
        position = len(self._calls)
        if given_id is not None and given_id not in self._used_ids:
            call_id = given_id
        else:
            seed = f"{self._salt}|{self.id or ''}|{position}|{name or ''}"
            call_id = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
            self.id_map[call_id] = given_id or ""
        self._used_ids.add(call_id)
        call = PartialToolCall(position=position, id=call_id, name=name, upstream_id=given_id)
        self._calls.append(call)
        return call

    @property
    def tool_calls(self) -> list[PartialToolCall]:
        return self._calls

    # --- result -------------------------------------------------------------------------

    def result(self) -> AssembledMessage:
        tool_calls = [call.to_dict() for call in self._calls]
        content: str | None = "".join(self._content) if self._content_seen else None
        if tool_calls and not content:
            content = None
        reasoning_key = next((k for k in REASONING_KEYS if self._reasoning.get(k)), None)
        if reasoning_key is None:
            reasoning_key = next((k for k in REASONING_KEYS if k in self._reasoning), None)
        reasoning = "".join(self._reasoning.get(reasoning_key or "", ())) or None
        finish = (None if self._finish is None and self.error is not None
                  else effective_finish_reason(self._finish, bool(tool_calls)))
        return AssembledMessage(
            content=content,
            tool_calls=tool_calls,
            reasoning=reasoning,
            reasoning_key=reasoning_key,
            refusal="".join(self._refusal) or None,
            finish_reason=finish,
            upstream_finish_reason=self._finish,
            usage=self.usage,
            id=self.id,
            model=self.model,
            created=self._meta.get("created"),
            system_fingerprint=self.system_fingerprint,
            error=self.error,
            message_extra=dict(self._extra_delta),
            extra=dict(self._extra),
            id_map=dict(self.id_map),
        )


def parts_text(parts: list[Any]) -> str:
    """The text of a message content given as a list of parts (its text parts, joined)."""
    return "".join(
        part["text"] for part in parts
        if isinstance(part, dict) and part.get("type") in ("text", "output_text")
        and isinstance(part.get("text"), str)
    )


def primary_choice(choices: Any) -> Mapping[str, Any] | None:
    """Choice 0 (n > 1 is not meaningful inside a tool loop; other choices are ignored)."""
    if not isinstance(choices, list):
        return None
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) in (0, None):
            return choice
    return None


def _non_empty(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_json(text: str) -> bool:
    if not text:
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _normalise_error(error: Any) -> dict[str, Any]:
    status = 500
    if isinstance(error, dict):
        for key in ("status_code", "code"):
            value = error.get(key)
            if isinstance(value, int) and 400 <= value < 600:
                status = value
                break
    normalised: dict[str, Any] = normalise_error_body(status, orjson.dumps({"error": error}))
    return dict(normalised["error"])


def _merge_reasoning_details(have: list[Any], new: list[Any]) -> None:
    """OpenRouter streams reasoning_details as pieces: join text of the same entry."""
    for item in new:
        last = have[-1] if have else None
        if (isinstance(item, dict) and isinstance(last, dict)
                and item.get("type") == last.get("type")
                and item.get("index") == last.get("index")):
            for key in ("text", "summary", "data"):
                if isinstance(item.get(key), str) and isinstance(last.get(key), str):
                    last[key] += item[key]
            continue
        have.append(dict(item) if isinstance(item, dict) else item)
