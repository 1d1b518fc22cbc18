"""A scripted upstream for the fault-loop tests: a "model" that uses the VM tools.

    model = ScriptedModel(agent(LOCKER))        # the policy decides each reply
    router.post(url).mock(side_effect=model)    # a respx side effect (httpx.Request in)
    FakeUpstream(model.fake_upstream_handler)   # or served on loopback (tests/support)

Every request body is recorded (`model.requests`) with what the model did (`model.steps`:
action, arguments, the usage it reported). The model reads a request the way a strict-mode
model should (`Reading`): evidence is the `<VM:CONTEXT>` blocks, the text of the
developer/system message outside the VM blocks, the real messages (pinned turns, client
tool results) except the question itself, and the content of page_fault results; the
manifest's hints and search results only say where to look.

Replies are rendered in a chosen `Dialect` (SSE_FORMAT.md: vLLM, Mistral, Gemini, Anthropic
compat, Azure, Groq ...), for `stream: true` as several SSE events, each its own body
piece, with text and tool-call arguments split across events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from proxy.tokens import counter_for_model
from tests.support.fake_upstream import RecordedRequest, Reply

CREATED = 1_700_000_000
VM_TOOLS = ("page_fault", "search_pages")
_MANIFEST = re.compile(r"<VM:MANIFEST_JSON>(.*?)</VM:MANIFEST_JSON>", re.S)
_CONTEXT = re.compile(r"<VM:CONTEXT>(.*?)</VM:CONTEXT>", re.S)


# --- what the model sees ---------------------------------------------------------------


@dataclass(frozen=True)
class ToolResult:
    name: str  # the function name as offered (possibly vm_-prefixed)
    arguments: dict[str, Any]
    content: str

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    @property
    def canonical(self) -> str:
        return self.name.removeprefix("vm_")


@dataclass
class Reading:
    body: dict[str, Any]
    question: str = ""
    evidence: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    context: str | None = None
    tools: list[str] = field(default_factory=list)  # every function name offered
    vm: dict[str, str] = field(default_factory=dict)  # canonical VM name -> offered name
    results: list[ToolResult] = field(default_factory=list)  # this turn's, in order

    @property
    def visible(self) -> str:
        return "\n".join(self.evidence)

    @property
    def searched(self) -> bool:
        return any(r.canonical == "search_pages" for r in self.results)

    @property
    def hits(self) -> list[str]:
        found: list[str] = []
        for result in self.results:
            data = result.json
            if result.canonical == "search_pages" and isinstance(data, dict):
                for hit in data.get("results") or ():
                    if isinstance(hit, dict) and hit.get("id") not in found:
                        found.append(str(hit.get("id")))
        return found

    @property
    def fault_attempts(self) -> list[str]:
        return [str(r.arguments.get("page_id")) for r in self.results
                if r.canonical == "page_fault"]

    def vm_results(self, canonical: str) -> list[Any]:
        return [r.json for r in self.results if r.canonical == canonical]


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def read_request(body: dict[str, Any]) -> Reading:
    reading = Reading(body=body)
    for tool in body.get("tools") or ():
        name = str((tool.get("function") or {}).get("name", ""))
        reading.tools.append(name)
    names = set(reading.tools)
    for canonical in VM_TOOLS:
        # The proxy renames its tools vm_* only when the client's tools use the plain name.
        if "vm_" + canonical in names:
            reading.vm[canonical] = "vm_" + canonical
        elif canonical in names:
            reading.vm[canonical] = canonical
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if last_user >= 0:
        reading.question = text_of(messages[last_user].get("content"))
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for index, message in enumerate(messages):
        role = message.get("role")
        text = text_of(message.get("content"))
        if role in ("system", "developer") and "<VM:" in text:
            manifest = _MANIFEST.search(text)
            if manifest is not None:
                try:
                    reading.manifest = json.loads(manifest.group(1))
                except ValueError:
                    reading.manifest = None
            # vm.turn_note "leading" closes the leading message with the turn's block: a
            # second <VM:CONTEXT> in the same message.
            contexts = _CONTEXT.findall(text)
            if contexts:
                reading.context = "\n".join(contexts)
                reading.evidence.extend(contexts)
            outside = _CONTEXT.sub("", _MANIFEST.sub("", text)).strip()
            if outside:
                reading.evidence.append(outside)
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {}
            calls[str(call.get("id"))] = (str(function.get("name")), arguments)
        if role == "tool":
            name, arguments = calls.get(str(message.get("tool_call_id")), ("", {}))
            result = ToolResult(name, arguments, text)
            if index > last_user:
                reading.results.append(result)
            if result.canonical == "page_fault":
                data = result.json
                if isinstance(data, dict) and isinstance(data.get("content"), str):
                    reading.evidence.append(data["content"])
                continue
            if result.canonical == "search_pages":
                continue  # hints are not evidence
            reading.evidence.append(text)
            continue
        if index != last_user and text:
            reading.evidence.append(text)
    return reading


# --- what the model does ---------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Answer:
    text: str


@dataclass(frozen=True)
class Refusal:
    """The model refuses: `refusal` instead of content, as OpenAI's models do."""

    text: str


@dataclass(frozen=True)
class Calls:
    calls: Sequence[Call]
    text: str = ""  # streamed before the calls


@dataclass(frozen=True)
class Fail:
    """An HTTP error status with an OpenAI-shaped body."""

    status: int
    message: str = "scripted upstream failure"
    error_type: str = "invalid_request_error"
    code: str | None = None


@dataclass(frozen=True)
class StreamError:
    """HTTP 200, some text, then `event: error` and the stream closes without [DONE]."""

    text: str
    message: str = "Upstream broke mid-stream."
    code: str = "upstream_broke"


Decision = Answer | Calls | Fail | StreamError | Refusal
Policy = Callable[[Reading], Decision]


@dataclass(frozen=True)
class Fact:
    """Something the user said once, asked for later: `topic` words in a question ask for
    it; `pattern`'s group 1 finds the answer in visible text."""

    topic: str
    pattern: re.Pattern[str]

    def asked_in(self, question: str) -> bool:
        return self.topic.lower() in question.lower()

    def find(self, text: str) -> str | None:
        match = self.pattern.search(text)
        return match.group(1) if match else None


def agent(*facts: Fact, answer: Callable[[Fact, str], str] | None = None) -> Policy:
    """The tool-using model: answer when the answer is visible; else search once with the
    question; else fault the next hit not yet tried at level 0; else "I don't know"."""
    phrase = answer or (lambda fact, found: f"Your {fact.topic} is {found}.")

    def decide(reading: Reading) -> Decision:
        fact = next((f for f in facts if f.asked_in(reading.question)), None)
        if fact is None:
            return Answer(f"Noted, thanks ({len(reading.question.split())} words).")
        found = fact.find(reading.visible)
        if found is not None:
            return Answer(phrase(fact, found))
        if "search_pages" in reading.vm and not reading.searched:
            return Calls([Call(reading.vm["search_pages"], {"query": reading.question})])
        if "page_fault" in reading.vm:
            tried = set(reading.fault_attempts)
            for hit in reading.hits:
                if hit not in tried:
                    return Calls([Call(reading.vm["page_fault"],
                                       {"page_id": hit, "target_level": 0})])
        return Answer("I don't know.")

    return decide


# --- how it says it --------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """How a server shapes its stream (SSE_FORMAT.md sections 2-6)."""

    name: str = "openai"
    args_null_header: bool = False  # vLLM: header `arguments: null`, fragments repeat nulls
    whole_call: bool = False  # Mistral: one delta per call, no index/type; finish+usage in it
    empty_id: bool = False  # Gemini compat: id ""
    index_base: int = 0  # Anthropic compat: first call at index 1
    tool_finish: str | None = "tool_calls"  # finish after calls; None: no finish_reason at all
    usage_at: str = "chunk"  # chunk (OpenAI, only when asked) | finish | x_groq
    azure_first: bool = False  # an empty-choices placeholder chunk first
    preface: str = ""  # text streamed before any tool call (Anthropic compat)


OPENAI = Dialect()


@dataclass
class Step:
    """One upstream request and the model's reply to it."""

    action: str  # answer | search | fault | calls | fail | stream_error
    decision: Decision
    usage: dict[str, int] | None
    stream: bool


def pieces(text: str, count: int) -> list[str]:
    """`text` cut into up to `count` non-empty pieces at arbitrary character positions."""
    if not text:
        return []
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


class ScriptedModel:
    def __init__(
        self,
        policy: Policy,
        *,
        dialect: Dialect = OPENAI,
        model: str = "gpt-4o-mini-2024-07-18",
    ) -> None:
        self.policy = policy
        self.dialect = dialect
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.steps: list[Step] = []
        self.queued: deque[Decision] = deque()  # replies that take precedence over the policy
        self.delays: dict[int, float] = {}  # request number (0-based) -> seconds before replying
        self._ids = itertools.count(1)

    # --- recording -------------------------------------------------------------------

    def queue(self, *decisions: Decision) -> None:
        self.queued.extend(decisions)

    @property
    def actions(self) -> list[str]:
        return [step.action for step in self.steps]

    def usages(self, since: int = 0) -> list[dict[str, int]]:
        return [s.usage for s in self.steps[since:] if s.usage is not None]

    def mark(self) -> int:
        """The number of requests so far, to look at one turn's requests afterwards."""
        return len(self.requests)

    # --- serving ---------------------------------------------------------------------

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        delay = self.delays.get(len(self.requests), 0.0)
        if delay:
            await asyncio.sleep(delay)
        status, headers, content = self.respond(json.loads(request.content))
        if isinstance(content, list):
            return httpx.Response(status, headers=headers, stream=Pieces(content))
        return httpx.Response(status, headers=headers, content=content)

    def fake_upstream_handler(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return Reply.json({"error": {"message": "unexpected route", "type": "not_found",
                                         "param": None, "code": None}}, status=404)
        delay = self.delays.get(len(self.requests), 0.0)
        if delay:
            time.sleep(delay)  # FakeUpstream calls handlers on its own thread
        status, headers, content = self.respond(request.json())
        if isinstance(content, list):
            return Reply(status, headers, chunks=content)
        return Reply(status, headers, content)

    def respond(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes | list[bytes]]:
        self.requests.append(body)
        decision = self.queued.popleft() if self.queued else self.policy(read_request(body))
        stream = body.get("stream") is True
        if isinstance(decision, Fail):
            self.steps.append(Step("fail", decision, None, stream))
            error = {"error": {"message": decision.message, "type": decision.error_type,
                               "param": None, "code": decision.code}}
            return decision.status, {"content-type": "application/json"}, _dumps(error)
        usage = self._usage(body, decision)
        self.steps.append(Step(_action(decision), decision, usage, stream))
        number = next(self._ids)
        if stream:
            events = list(self._stream(body, decision, usage, number))
            return 200, {"content-type": "text/event-stream; charset=utf-8"}, events
        return 200, {"content-type": "application/json"}, _dumps(
            self._completion(decision, usage, number))

    def _usage(self, body: dict[str, Any], decision: Decision) -> dict[str, int]:
        prompt = counter_for_model(self.model).request(body)
        if isinstance(decision, Calls):
            completion = 9 + sum(len(json.dumps(c.arguments)) // 4 for c in decision.calls)
        else:
            completion = 5 + len(getattr(decision, "text", "").split())
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def _call_dicts(self, decision: Calls, number: int) -> list[dict[str, Any]]:
        return [{"id": "" if self.dialect.empty_id else f"call_{number:03d}_{i}",
                 "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for i, c in enumerate(decision.calls)]

    def _completion(self, decision: Decision, usage: dict[str, int], number: int
                    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if isinstance(decision, Calls):
            message["content"] = decision.text or None
            message["tool_calls"] = self._call_dicts(decision, number)
            finish = self.dialect.tool_finish or "tool_calls"
        elif isinstance(decision, Answer | StreamError):
            message["content"] = decision.text
        elif isinstance(decision, Refusal):
            message["refusal"] = decision.text
        return {"id": f"chatcmpl-scripted{number:03d}", "object": "chat.completion",
                "created": CREATED, "model": self.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": finish}],
                "usage": usage, "system_fingerprint": "fp_scripted"}

    def _stream(self, body: dict[str, Any], decision: Decision, usage: dict[str, int],
                number: int) -> Iterator[bytes]:
        d = self.dialect
        stream_id = f"chatcmpl-scripted{number:03d}"
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            event: dict[str, Any] = {
                "id": stream_id, "object": "chat.completion.chunk", "created": CREATED,
                "model": self.model, "system_fingerprint": "fp_scripted",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}
            if wants_usage and d.usage_at == "chunk":
                event["usage"] = None
            event.update(extra)
            return b"data: " + _dumps(event) + b"\n\n"

        def usage_extra() -> dict[str, Any]:
            if d.usage_at == "finish":
                return {"usage": usage}
            if d.usage_at == "x_groq":
                return {"x_groq": {"id": "req_scripted", "usage": usage}}
            return {}

        if d.azure_first:
            yield _dumps_event({"choices": [], "created": 0, "id": "", "model": "",
                                "object": "", "prompt_filter_results": [
                                    {"prompt_index": 0, "content_filter_results": {}}]})
        text = decision.text if isinstance(decision, Answer | Calls | StreamError) else ""
        if isinstance(decision, Calls) and d.preface:
            text = d.preface + text
        if isinstance(decision, Refusal):
            yield chunk({"role": "assistant", "content": None, "refusal": ""})
            for piece in pieces(decision.text, 3):
                yield chunk({"refusal": piece})
        elif isinstance(decision, Calls) and not text:
            yield chunk({"role": "assistant", "content": None})
        else:
            yield chunk({"role": "assistant", "content": ""})
        for piece in pieces(text, 4):
            yield chunk({"content": piece})
        if isinstance(decision, StreamError):
            error = {"error": {"message": decision.message, "type": "server_error",
                               "param": None, "code": decision.code}}
            yield b"event: error\ndata: " + _dumps(error) + b"\n\n"
            return
        finish: str | None = "stop"
        finish_sent = False
        if isinstance(decision, Calls):
            finish = d.tool_finish
            calls = self._call_dicts(decision, number)
            for i, call in enumerate(calls):
                index = d.index_base + i
                name, args = call["function"]["name"], call["function"]["arguments"]
                if d.whole_call:
                    delta = {"tool_calls": [{"id": call["id"], "function": {
                        "name": name, "arguments": args}}]}
                    if i == len(calls) - 1 and finish is not None:
                        yield chunk(delta, finish, **usage_extra())
                        finish_sent = True
                    else:
                        yield chunk(delta)
                    continue
                header_args = None if d.args_null_header else ""
                yield chunk({"tool_calls": [{"index": index, "id": call["id"],
                                             "type": "function", "function": {
                                                 "name": name, "arguments": header_args}}]})
                for piece in pieces(args, 3):
                    fragment: dict[str, Any] = {"index": index,
                                                "function": {"arguments": piece}}
                    if d.args_null_header:
                        fragment.update(id=None, type=None)
                        fragment["function"]["name"] = None
                    yield chunk({"tool_calls": [fragment]})
        if not finish_sent:
            if finish is not None:
                yield chunk({}, finish, **usage_extra())
            elif usage_extra():
                # No finish_reason at all: the vendor's usage rides on a last empty chunk.
                yield chunk({}, None, **usage_extra())
        if wants_usage and d.usage_at == "chunk":
            yield _dumps_event({"id": stream_id, "object": "chat.completion.chunk",
                                "created": CREATED, "model": self.model,
                                "system_fingerprint": "fp_scripted", "choices": [],
                                "usage": usage})
        yield b"data: [DONE]\n\n"


def _action(decision: Decision) -> str:
    if isinstance(decision, Answer):
        return "answer"
    if isinstance(decision, Refusal):
        return "refuse"
    if isinstance(decision, StreamError):
        return "stream_error"
    if isinstance(decision, Calls):
        names = {c.name.removeprefix("vm_") for c in decision.calls}
        if names == {"search_pages"}:
            return "search"
        if names == {"page_fault"}:
            return "fault"
        return "calls"
    return "fail"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _dumps_event(value: Any) -> bytes:
    return b"data: " + _dumps(value) + b"\n\n"


class Pieces(httpx.AsyncByteStream):
    """A response body delivered one SSE event per read, like a real stream."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)

    async def __aiter__(self) -> Any:
        for piece in self._chunks:
            yield piece

    async def aclose(self) -> None:
        pass
