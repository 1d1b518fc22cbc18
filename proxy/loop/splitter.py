"""Split one upstream iteration's stream into what the client sees now and what the loop keeps.

The fault loop streams several upstream responses into ONE client stream. For each
upstream response (an iteration) a `StreamSplitter` is fed the parsed chunks and returns,
at once, the client chunks to send:

- content, reasoning and refusal deltas, rewritten to the client stream's id, created and
  model (the first real model name seen, or the one given), with vendor envelope fields
  (obfuscation, x_groq, provider, content_filter_results, ...) left out;
- exactly one role chunk over the whole stream: only while `first_iteration` is true and
  no role was sent yet (upstream `role` fields are never copied: TGI repeats them). It
  goes out alone as soon as the upstream starts text (`content` a string); otherwise with
  the first delta shown, its `content` null when that delta is a client's tool call, as
  OpenAI streams a tool call;
- client tool-call deltas as they arrive, renumbered among the client's calls only
  (header fragment with id/type/name, later fragments with arguments); the name comes in
  the header, so the call is classified on its first fragment (a call whose name comes
  later is held until it does);
- nothing of VM tool calls: they are accumulated for the loop to resolve.

Withheld for the loop to decide: finish_reason (is this iteration the last?) and usage
(summed over iterations, sent once at the end if the client asked). Dropped: Azure's
empty placeholder chunk (id "" and model "" would break the one-id rule), usage-only and
error-only chunks (see `outcome().error`), SSE comments (the loop sends its own).
Vendor delta fields (e.g. Groq's `channel`) ride along with forwarded text, reasoning or
client calls; alone they are dropped.

Text streamed before the model turns to a VM call has already reached the client; that
is intended, and the next iteration's text simply continues the stream.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.loop.citations import CitationStripper
from proxy.upstream.assemble import (
    AssembledMessage,
    ChunkAccumulator,
    ChunkUpdate,
    ToolCallFragment,
)
from proxy.upstream.sse import SSEEvent
from proxy.upstream.usage import Usage, openai_usage

__all__ = ["IterationOutcome", "StreamSplitter", "client_chunk", "usage_chunk"]


@dataclass(slots=True)
class IterationOutcome:
    vm_calls: list[dict[str, Any]]  # message shape, in upstream order
    client_calls: list[dict[str, Any]]  # message shape, in client index order
    content: str | None  # what the model wrote (citations included)
    forwarded_content: str  # what the client received in this iteration
    finish_reason: str | None  # effective (see assemble.effective_finish_reason)
    usage: Usage | None  # this iteration's upstream usage
    error: dict[str, Any] | None  # OpenAI-shaped error the upstream sent mid-stream
    message: AssembledMessage  # the whole response, e.g. for `message.to_message()`


def client_chunk(
    stream_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    include_usage: bool = False,
    system_fingerprint: str | None = None,
    service_tier: str | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    """A `chat.completion.chunk` with one choice, in OpenAI's key order."""
    chunk = _chunk_head(stream_id, created, model, system_fingerprint, service_tier)
    chunk["choices"] = [{"index": 0, "delta": {} if delta is None else delta,
                         "logprobs": logprobs, "finish_reason": finish_reason}]
    if include_usage:
        chunk["usage"] = None  # OpenAI sends usage:null on every chunk when asked for usage
    return chunk


def usage_chunk(
    stream_id: str,
    created: int,
    model: str,
    usage: Usage | None,
    *,
    system_fingerprint: str | None = None,
    service_tier: str | None = None,
) -> dict[str, Any]:
    """The trailing `choices: []` chunk that carries usage (SSE_FORMAT.md section 6)."""
    chunk = _chunk_head(stream_id, created, model, system_fingerprint, service_tier)
    chunk["choices"] = []
    chunk["usage"] = None if usage is None else openai_usage(usage)
    return chunk


def _chunk_head(
    stream_id: str,
    created: int,
    model: str,
    system_fingerprint: str | None,
    service_tier: str | None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": stream_id, "object": "chat.completion.chunk",
                             "created": created, "model": model}
    if service_tier:
        chunk["service_tier"] = service_tier
    if system_fingerprint:
        chunk["system_fingerprint"] = system_fingerprint
    return chunk


class StreamSplitter:
    """One per upstream iteration; see the module docstring."""

    def __init__(
        self,
        vm_tool_names: Collection[str],
        *,
        client_stream_id: str,
        created: int,
        model: str | None = None,
        include_usage: bool = False,
        first_iteration: bool = True,
        next_client_tool_index: int = 0,
        citations: CitationStripper | None = None,
        id_salt: str = "",
    ) -> None:
        self.vm_tool_names = frozenset(vm_tool_names)
        self.client_stream_id = client_stream_id
        self.created = created
        self.include_usage = include_usage
        self.accumulator = ChunkAccumulator(id_salt=id_salt)
        self._model = model or None
        self._role_pending = first_iteration
        self._next_client = next_client_tool_index
        self._client_index: dict[int, int] = {}  # call position -> client index
        self._vm_positions: set[int] = set()
        self._citations = citations
        self._forwarded: list[str] = []
        self._fingerprint: str | None = None
        self._service_tier: str | None = None
        self._ended = False

    @property
    def model(self) -> str:
        return self._model or ""

    @property
    def role_sent(self) -> bool:
        """False until a role chunk went out; pass `first_iteration=not role_sent` on."""
        return not self._role_pending

    @property
    def next_client_tool_index(self) -> int:
        return self._next_client

    def feed_event(self, event: SSEEvent) -> list[dict[str, Any]]:
        """Convenience for decoded events: comments dropped, [DONE] noted, JSON fed."""
        if event.is_comment:
            return []
        update = self.accumulator.feed_event(event)
        return [] if update is None else self._render(update)

    def feed(self, chunk: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The client chunks this upstream chunk yields now (often zero or one)."""
        return self._render(self.accumulator.feed(chunk))

    def _render(self, update: ChunkUpdate) -> list[dict[str, Any]]:
        if self._model is None and self.accumulator.model:
            self._model = self.accumulator.model
        if self._fingerprint is None:
            self._fingerprint = self.accumulator.system_fingerprint
        if self._service_tier is None:
            tier = self.accumulator.extra.get("service_tier")
            self._service_tier = tier if isinstance(tier, str) else None
        if not update.has_choice:
            return []
        delta: dict[str, Any] = {}
        content = update.content
        if content and self._citations is not None:
            content = self._citations.feed(content)
        if content:
            delta["content"] = content
            self._forwarded.append(content)
        for key, text in update.reasoning:
            delta[key] = text
        tool_deltas = [d for frag in update.tool_calls for d in self._route(frag)]
        if tool_deltas:
            delta["tool_calls"] = tool_deltas
        if update.refusal:
            delta["refusal"] = update.refusal
        if delta:
            for key, value in update.delta_extra.items():
                delta.setdefault(key, value)
        elif not self._role_pending or not self.accumulator.content_seen:
            # The role goes out at once for text only: an upstream about to call tools
            # (content null) may call the client's, whose chunk carries `content: null`.
            return []
        logprobs = update.logprobs if content or update.refusal else None
        return [self._emit(delta, logprobs)]

    def _route(self, fragment: ToolCallFragment) -> list[dict[str, Any]]:
        call = fragment.call
        position = call.position
        if position in self._vm_positions:
            return []
        client_index = self._client_index.get(position)
        if client_index is not None:
            if not fragment.arguments:
                return []
            return [{"index": client_index, "function": {"arguments": fragment.arguments}}]
        if call.name is None:
            return []  # not classifiable yet; its arguments wait in the accumulator
        if call.name in self.vm_tool_names:
            self._vm_positions.add(position)
            return []
        client_index = self._next_client
        self._next_client += 1
        self._client_index[position] = client_index
        return [{"index": client_index, "id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": call.arguments}}]

    def _emit(self, delta: dict[str, Any], logprobs: Any = None) -> dict[str, Any]:
        if self._role_pending:
            self._role_pending = False
            text = delta.pop("content", None if "tool_calls" in delta else "")
            delta = {"role": "assistant", "content": text, **delta}
        return client_chunk(self.client_stream_id, self.created, self.model, delta,
                            include_usage=self.include_usage,
                            system_fingerprint=self._fingerprint,
                            service_tier=self._service_tier, logprobs=logprobs)

    def end(self) -> list[dict[str, Any]]:
        """After the upstream response ends: chunks still owed to the client.

        The citation stripper's held tail, and `"{}"` as arguments for client calls that
        got none (vLLM/muse-spark send `arguments: null`; clients json.loads them).
        """
        if self._ended:
            return []
        self._ended = True
        out: list[dict[str, Any]] = []
        if self._citations is not None:
            tail = self._citations.flush()
            if tail:
                self._forwarded.append(tail)
                out.append(self._emit({"content": tail}))
        calls = self.accumulator.tool_calls
        patches = [{"index": client_index, "function": {"arguments": "{}"}}
                   for position, client_index in self._client_index.items()
                   if not calls[position].arguments]
        if patches:
            out.append(self._emit({"tool_calls": patches}))
        return out

    def outcome(self) -> IterationOutcome:
        message = self.accumulator.result()
        vm_calls = [message.tool_calls[p] for p in sorted(self._vm_positions)]
        by_client_index = sorted(self._client_index.items(), key=lambda item: item[1])
        client_calls = [message.tool_calls[p] for p, _ in by_client_index]
        return IterationOutcome(
            vm_calls=vm_calls,
            client_calls=client_calls,
            content=message.content,
            forwarded_content="".join(self._forwarded),
            finish_reason=message.finish_reason,
            usage=message.usage,
            error=message.error,
            message=message,
        )

    def finish_chunk(self, finish_reason: str) -> dict[str, Any]:
        """The one finish chunk of the client stream (empty delta, OpenAI style)."""
        delta: dict[str, Any] = {}
        if self._role_pending:
            self._role_pending = False
            delta = {"role": "assistant", "content": ""}
        return client_chunk(self.client_stream_id, self.created, self.model, delta,
                            finish_reason=finish_reason, include_usage=self.include_usage,
                            system_fingerprint=self._fingerprint,
                            service_tier=self._service_tier)

    def usage_chunk(self, usage: Usage | None) -> dict[str, Any]:
        return usage_chunk(self.client_stream_id, self.created, self.model, usage,
                           system_fingerprint=self._fingerprint,
                           service_tier=self._service_tier)
