"""One VM-active request: its packed upstream body, its VM tools, its fault accounting, and
what is stored when it ends. The loops (nonstream.py, stream.py) drive it."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.config import VMSettings
from proxy.logs import RequestStats, log
from proxy.loop.conversations import Conversations
from proxy.loop.failures import answer_not_stored, log_failure
from proxy.loop.placement import Placement
from proxy.loop.resolver import FaultResolver
from proxy.loop.turn_log import STATE_KEY, TurnLog
from proxy.store.base import PageStore
from proxy.tokens import TokenCounter
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.client import Upstream
from proxy.upstream.headers import informative_headers
from proxy.vm.faults import LIMIT_REACHED, error_json
from proxy.vm.mutations import CITE, Mutation
from proxy.vm.page_table import PageTable

_DROP_WITH_TOOLS = ("tools", "tool_choice", "parallel_tool_calls")
BUDGET_NOTE = "This result does not fit the context budget; answer with what you have."
# The assistant message carrying the calls and the JSON envelopes of their results.
# The assistant message carrying the calls: about this much per call, and once.
CALL_TOKENS = 25
CALLS_FRAMING_TOKENS = 10


@dataclass
class Turn:
    upstream: Upstream
    headers: list[tuple[str, str]]
    settings: VMSettings
    store: PageStore
    conversations: Conversations
    placement: Placement
    tenant: str
    session: str | None
    mode: str
    body: dict[str, Any]
    vm_tool_names: dict[str, str]
    resolver: FaultResolver
    counter: TokenCounter
    table: PageTable
    turn_number: int
    prompt_tokens_full: int
    client_wants_usage: bool = False
    created: int = 0
    stream_id: str = field(default_factory=lambda: "chatcmpl-" + secrets.token_hex(12))
    salt: str = field(default_factory=lambda: secrets.token_hex(4))
    prompt_tokens_sent: int = 0
    packed_reply_tokens: int = 0
    mutations: list[Mutation] = field(default_factory=list)
    # The turn's record of its prompt, completed and logged when it ends (turn_log.py).
    log: TurnLog = field(default_factory=TurnLog)
    calls: int = 0  # upstream calls made
    citations: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    shown_refusal: list[str] = field(default_factory=list)
    # The prompt's frame (proxy.vm.frame) to keep in the conversation state; None: the next
    # turn compacts.
    frame: dict[str, Any] | None = None
    # server.log_content: every upstream prompt and the stored answer go to the log.
    log_content: bool = False
    # The access line's fields of this request (upstream_ms, upstream_request_id).
    stats: RequestStats | None = None
    # Request ids, rate limits, processing time of the latest upstream reply: the client
    # gets them as it would from the upstream itself (a stream: those of the first call).
    upstream_headers: dict[str, str] = field(default_factory=dict)
    _last_prompt: int = 0
    _resolving_from: int = 0
    # The `name` the client gives the assistant's messages, stored on the answer too.
    answer_name: str = ""
    # Where the answer was stored, when not on the placement's conversation (another
    # request of the same history stored its answer there first: this one went on a fork).
    stored_on: str | None = None
    _framing: int = CALLS_FRAMING_TOKENS

    @property
    def max_iterations(self) -> int:
        return self.settings.max_loop_iterations

    @property
    def keepalive_s(self) -> float:
        return self.settings.keepalive_s

    @property
    def strip_citations(self) -> bool:
        return self.mode == "strict" and not self.settings.show_citations

    @property
    def faults(self) -> int:
        return self.resolver.faults

    def first_body(self) -> dict[str, Any]:
        """The body of the first upstream call (of the only one, on a cap of one: then
        without the VM tools, as every last iteration)."""
        if self.max_iterations == 1:
            return self._last_iteration(self.body)
        return self.body

    def body_after(
        self,
        iteration: int,
        body: dict[str, Any],
        message: AssembledMessage,
        vm_calls: list[dict[str, Any]],
        client_calls: list[dict[str, Any]],
        results: list[dict[str, Any]],
    ) -> dict[str, Any] | None:
        """The loop control both loops share: the body of the call after `iteration`, or
        None when `iteration`'s answer is the client's (no VM calls, client calls among
        them, or the iteration cap reached). `results` answer `vm_calls`, which are
        resolved whatever this returns. The last iteration goes without the VM tools, so
        the model must answer."""
        if not vm_calls or client_calls or iteration + 1 >= self.max_iterations:
            return None
        following = self._following(body, message, vm_calls, results)
        if iteration + 2 == self.max_iterations:
            following = self._last_iteration(following)
        return following

    def _last_iteration(self, body: dict[str, Any]) -> dict[str, Any]:
        self.withdraw("the loop reached its iteration limit")
        return self.without_vm_tools(body)

    def prime_prompt_tokens(self, tokens: int) -> None:
        """The packer's count of the first body, so it is not tokenized again."""
        self._last_prompt = tokens

    def split_calls(
        self, calls: Sequence[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        vm: list[dict[str, Any]] = []
        client: list[dict[str, Any]] = []
        for call in calls:
            (vm if _name(call) in self.vm_tool_names else client).append(call)
        return vm, client

    async def resolve(self, calls: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tool messages answering the model's VM calls, in order."""
        self._resolving_from = self.resolver.state.spent
        self._framing = CALLS_FRAMING_TOKENS + CALL_TOKENS * len(calls)
        return await self.resolver.resolve(calls, self.vm_tool_names)

    def fault_room(self) -> int:
        """Tokens a faulted page may still take: the budget less the prompt so far, the
        reply's reserve, the pages faulted in this round (with their JSON, see
        vm.faults.RESULT_OVERHEAD), and the message carrying the calls; escaping makes code
        dearer in JSON, so a twentieth is kept back."""
        pending = self.resolver.state.spent - self._resolving_from
        free = self.settings.context_budget - self._last_prompt - self.packed_reply_tokens
        return int((free - pending - self._framing) * 0.95)

    def _following(
        self,
        body: dict[str, Any],
        message: AssembledMessage,
        vm_calls: list[dict[str, Any]],
        results: list[dict[str, Any]],
    ) -> dict[str, Any]:
        assistant = message.to_message()
        assistant["tool_calls"] = vm_calls
        names = {str(c.get("id")): _name(c) for c in vm_calls}
        results = self._fit(body, assistant, results, names)
        self._last_prompt += sum(self.counter.message(m, names) for m in (assistant, *results))
        following = {**body, "messages": [*body["messages"], assistant, *results]}
        if self.resolver.withdrawn:
            following = self.without_vm_tools(following)
        return following

    def _fit(
        self,
        body: dict[str, Any],
        assistant: dict[str, Any],
        results: list[dict[str, Any]],
        names: dict[str, str],
    ) -> list[dict[str, Any]]:
        """Keep the next prompt within `vm.context_budget`: results that would overflow it
        are replaced by a note saying so, newest first, and the tools are withdrawn."""
        reply = self.packed_reply_tokens
        fitted = list(results)

        def size() -> int:
            added = sum(self.counter.message(m, names) for m in (assistant, *fitted))
            return self._last_prompt + added + reply

        for i in range(len(fitted) - 1, -1, -1):
            if size() <= self.settings.context_budget:
                break
            fitted[i] = {**fitted[i], "content": error_json(BUDGET_NOTE, LIMIT_REACHED)}
            self.withdraw("The context budget of this turn is used up")
        return fitted

    def withdraw(self, reason: str) -> None:
        self.resolver.withdraw(reason)

    def without_vm_tools(self, body: dict[str, Any]) -> dict[str, Any]:
        tools = [t for t in body.get("tools") or () if _tool_name(t) not in self.vm_tool_names]
        out = {k: v for k, v in body.items() if k not in _DROP_WITH_TOOLS}
        if tools:
            out["tools"] = tools
            for key in ("tool_choice", "parallel_tool_calls"):
                if key in body:
                    out[key] = body[key]
        return out

    def note_reply(self, raw_headers: Sequence[tuple[bytes, bytes]], seconds: float) -> None:
        """One upstream call answered after `seconds` (a stream: its headers came)."""
        self.upstream_headers = informative_headers(raw_headers)
        if self.stats is not None:
            self.stats.upstream_ms = (self.stats.upstream_ms or 0.0) + seconds * 1000.0
            request_id = self.upstream_headers.get("x-request-id")
            if request_id is not None:
                self.stats.upstream_request_id = request_id

    def note_sent(self, path: str, body: dict[str, Any]) -> None:
        """An upstream call goes out to `path` with `body`, as sent (the first one is the
        prompt the turn record describes)."""
        self.log.note_sent(path, body)

    def record_upstream_prompt(self, body: dict[str, Any]) -> None:
        """Account the prompt of one upstream call (counted once, then incrementally)."""
        self.calls += 1
        if not self._last_prompt:
            self._last_prompt = self.counter.request(body)
        self.prompt_tokens_sent += self._last_prompt
        if self.log_content:
            log.info("upstream prompt", extra={"turn": self.turn_number, "body": body})

    def note_shown(self, chunk: Mapping[str, Any]) -> None:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                self.shown.append(text)
            refusal = delta.get("refusal")
            if refusal:
                self.shown_refusal.append(refusal)

    def shown_text(self) -> str | None:
        """Everything a streaming client was shown, over all iterations: the answer as it
        will resend it."""
        return "".join(self.shown) if self.shown else None

    def shown_refusal_text(self) -> str | None:
        """The refusal a streaming client was shown, if the model refused."""
        return "".join(self.shown_refusal) if self.shown_refusal else None

    def note_citations(self, ids: Sequence[str]) -> None:
        self.citations.extend(ids)

    async def finish(
        self,
        content: str | None,
        client_calls: list[dict[str, Any]],
        *,
        answer: dict[str, Any] | None = None,
        response_id: str | None = None,
        refusal: str | None = None,
    ) -> Placement | None:
        """Store the answer as the client received it, with this turn's page-table state and
        mutation records, in one write; where it landed (None: storing it failed, for a
        whole-history request; under a session, MemoryUnavailable is raised).
        `answer`: the message to store, when the client's dialect made it (Responses);
        `response_id`: recorded where the answer ends, in that write (Conversations.extend);
        `refusal`: the model's refusal, part of the answer."""
        if answer is None:
            answer = answer_message(content, client_calls, self.answer_name, refusal=refusal)
        if self.log_content:
            log.info("answer", extra={"turn": self.turn_number, "answer": answer})
        self.table.note_mapped(self.resolver.mapped_levels(), self.turn_number)
        for page_id, level in self.resolver.faulted_levels().items():
            self.table.note_faulted(page_id, level, self.turn_number)
        logged, replay = self.log.finish(self.loop_summary(), time.time())
        state_patch: dict[str, Any] = {"table": self.table.to_dict(), "frame": self.frame}
        if replay:
            state_patch[STATE_KEY] = replay
        try:
            stored = await self.conversations.extend(
                self.tenant,
                self.placement,
                [answer],
                state_patch=state_patch,
                mutations=[*self.mutations, *logged, *self.resolver.mutations, *self._cited()],
                response_id=response_id,
            )
        except Exception as exc:
            if self.session is not None:
                # The client may never send this answer again: it must be stored before
                # the client gets it, so the request fails (a 503, or a stream's error
                # event in place of its end) and the client retries it.
                log.warning("storing the answer of a session's turn failed: %s", exc)
                raise answer_not_stored() from exc
            # A whole-history client has its answer and resends it: losing the copy is
            # logged, not raised.
            log_failure("storing the answer of a VM turn failed")
            return None
        if stored.leaf.conv_id != self.placement.leaf.conv_id:
            self.stored_on = stored.leaf.conv_id
        return stored

    def loop_summary(self) -> dict[str, int]:
        """What the fault loop did, as the turn record keeps it."""
        return {
            "calls": self.calls,
            "faults": self.faults,
            "searches": self.resolver.searches,
            "sent": self.prompt_tokens_sent,
            "full": self.prompt_tokens_full,
        }

    def _cited(self) -> list[Mutation]:
        """Citations stripped from the answer, kept in the mutation log as `cite` events."""
        at = time.time()
        unique = dict.fromkeys(self.citations)
        return [Mutation(self.turn_number, CITE, page_id, at=at) for page_id in unique]

    def summary_comment(self) -> str:
        return (
            f"vm faults={self.faults} prompt_tokens={self.prompt_tokens_sent}"
            f" prompt_tokens_full={self.prompt_tokens_full}"
        )

    def response_headers(self, *, final: bool) -> dict[str, str]:
        headers = {
            **self.upstream_headers,
            "x-vm-session": self.session or self.stored_on or self.placement.leaf.conv_id,
            "x-vm-prompt-tokens-full": str(self.prompt_tokens_full),
        }
        if final:
            headers["x-vm-faults"] = str(self.faults)
            headers["x-vm-prompt-tokens"] = str(self.prompt_tokens_sent)
        else:
            # A stream's headers leave before its faults happen: the first prompt is what is
            # known; the totals follow in an SSE comment before [DONE].
            headers["x-vm-prompt-tokens"] = str(self.prompt_tokens_sent)
        return headers


def answer_message(
    content: str | list[Any] | None,
    tool_calls: Sequence[Mapping[str, Any]],
    name: str = "",
    *,
    refusal: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer as the client will resend it. A client that names the assistant's
    messages (OpenAI's `name`, in multi-party chats) resends the answer with that name;
    stored without it, the resent history would not match the stored one (the name is part
    of a message's identity) and every turn would fork. A refusal is kept: without it the
    message would reach the upstream again as an empty answer, which OpenAI's API refuses
    (an assistant message needs content, calls or a refusal); so are a legacy
    `function_call` and an audio answer's id (`extra`, from `resent_fields`), for the same
    reason."""
    answer: dict[str, Any] = {"role": "assistant", "content": content}
    if refusal:
        answer["refusal"] = refusal
    if extra:
        answer.update(extra)
    if name:
        answer["name"] = name
    if tool_calls:
        answer["tool_calls"] = list(tool_calls)
    return answer


def resent_fields(message_extra: Mapping[str, Any]) -> dict[str, Any]:
    """What of an answer's other fields its client sends back and the upstream needs: a
    legacy `function_call`, and an audio answer's `{"id"}` (OpenAI's form for an earlier
    audio answer in the history; its data and transcript are not sent back)."""
    fields: dict[str, Any] = {}
    call = message_extra.get("function_call")
    if isinstance(call, Mapping) and call.get("name"):
        fields["function_call"] = {"name": call.get("name"),
                                   "arguments": call.get("arguments") or ""}
    audio = message_extra.get("audio")
    if isinstance(audio, Mapping) and isinstance(audio.get("id"), str):
        fields["audio"] = {"id": audio["id"]}
    return fields


def assistant_name(messages: Sequence[Mapping[str, Any]]) -> str:
    """The `name` of the request's latest assistant message ("" when it has none)."""
    for message in reversed(messages):
        if message.get("role") == "assistant":
            name = message.get("name")
            return name if isinstance(name, str) else ""
    return ""


def _name(call: Mapping[str, Any]) -> str:
    function = call.get("function")
    return str(function.get("name") or "") if isinstance(function, Mapping) else ""


def _tool_name(tool: Any) -> str:
    if isinstance(tool, Mapping):
        function = tool.get("function")
        if isinstance(function, Mapping):
            return str(function.get("name") or "")
    return ""
