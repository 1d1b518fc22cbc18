"""One memory turn of a Responses API client, on the shared loop (nonstream.run_loop and
stream.stream_events): how its upstream calls are made (`upstream.responses`: "native" to
/responses, "chat" to /chat/completions), the one Response the client gets, and what is
stored when it ends (the answer, and the proxy's response id mapped to where it landed,
so that `previous_response_id` continues the conversation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from proxy.logs import log
from proxy.loop.citations import strip_citations
from proxy.loop.nonstream import call_chat, post_for_json, raise_upstream_error, run_loop
from proxy.loop.placement import Placement
from proxy.loop.responses_adapter import chat_upstream_body, native_body
from proxy.loop.responses_output import (
    chat_items,
    new_id,
    now,
    response_object,
    stored_items,
    strip_item_citations,
    visible_items,
)
from proxy.loop.stream import open_chat, open_stream
from proxy.loop.turn import Turn
from proxy.store.base import PageStore
from proxy.upstream.assemble import AssembledMessage
from proxy.upstream.client import Reply
from proxy.upstream.responses import ItemsMessage, read_response
from proxy.upstream.responses_format import assistant_message, responses_usage
from proxy.upstream.usage import Usage


@dataclass
class ResponsesTurn:
    turn: Turn
    request: dict[str, Any]  # the client's Responses request, as validated
    native: bool  # upstream.responses == "native"
    store: PageStore
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=now)

    def __post_init__(self) -> None:
        # Its upstream calls are made from the chat prompt (a replay does the same).
        self.turn.log.dialect = "responses"

    # --- the upstream calls ------------------------------------------------------------------

    async def call(self, turn: Turn, body: dict[str, Any], iteration: int) -> AssembledMessage:
        """One non-stream upstream call of the loop (nonstream.Call)."""
        if not self.native:
            return await call_chat(turn, chat_upstream_body(body), iteration)
        turn.record_upstream_prompt(body)
        upstream = native_body(self.request, body, stream=False)
        parsed = await post_for_json(turn, "/responses", upstream)
        return raise_upstream_error(read_response(parsed))

    async def open(self, turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply:
        """One streamed upstream call of the loop."""
        if not self.native:
            return await open_chat(turn, stack, chat_upstream_body(body))
        turn.record_upstream_prompt(body)
        return await open_stream(turn, stack, "/responses",
                                 native_body(self.request, body, stream=True))

    # --- answering ---------------------------------------------------------------------------

    async def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Run the loop from the first `body`; the client's Response."""
        result = await run_loop(self.turn, body, self.call)
        last_index = len(result.messages) - 1
        iterations = [
            self.visible(message, result.client_calls if i == last_index else [])
            for i, message in enumerate(result.messages)
        ]
        last = result.messages[-1]
        upstream = last.response if isinstance(last, ItemsMessage) else None
        return await self.finish(iterations, result.usage, self.status(last), upstream)

    def visible(
        self, message: AssembledMessage, client_calls: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """What the client sees of one iteration's answer (page labels a model copied
        stripped, and citations in strict mode): a Responses upstream's items but the VM
        calls, a chat upstream's answer as items (its calls only when they are the
        client's)."""
        turn = self.turn
        citations = turn.strip_citations
        if isinstance(message, ItemsMessage):
            items = visible_items(message.items, turn.vm_tool_names)
            cited: list[str] = []
            items = [strip_item_citations(item, cited, citations=citations) for item in items]
            turn.note_citations(cited)
            return items
        content = message.content
        if content:
            content, ids = strip_citations(content, citations=citations)
            turn.note_citations(ids)
        return chat_items(message, content, client_calls)

    def status(self, message: AssembledMessage) -> str:
        if isinstance(message, ItemsMessage) and message.status in ("completed", "incomplete"):
            return message.status
        return "incomplete" if message.finish_reason == "length" else "completed"

    def usage(self, usage: Usage | None) -> dict[str, Any] | None:
        """The loop's summed usage in the Responses shape."""
        return dict(usage) if self.native and usage is not None else responses_usage(usage)

    async def finish(
        self,
        iterations: Sequence[Sequence[Mapping[str, Any]]],
        usage: Usage | None,
        status: str,
        upstream: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """Store the answer and the response id; the client's Response. The id goes in the
        answer's write (as durable as it: a whole-history request's may be deferred), or,
        when the answer was stored already and so needed no write, in a write of its own."""
        answer = assistant_message(stored_items(iterations))
        placement = await self.turn.finish(
            answer.get("content"), list(answer.get("tool_calls") or ()), answer=answer,
            response_id=self.response_id,
        )
        if placement is not None:
            await remember_unwritten(self.store, self.turn.tenant, self.response_id, placement)
        output = [item for items in iterations for item in items]
        obj = response_object(
            self.request, upstream, response_id=self.response_id, created_at=self.created_at,
            status=status, output=output, usage=self.usage(usage),
        )
        if status == "incomplete" and not obj.get("incomplete_details"):
            obj["incomplete_details"] = {"reason": "max_output_tokens"}
        return obj


async def remember_unwritten(
    store: PageStore, tenant: str, response_id: str, answered: Placement
) -> None:
    """Record a response id where its answer ended, unless the answer's own write did
    (Conversations.extend's `response_id`): there was none when the same answer was found
    stored already at that point (another request's, answered alike)."""
    if answered.new_count == 0:
        await remember(store, tenant, response_id, answered.leaf.conv_id,
                       answered.offset + answered.length)


async def remember(store: PageStore, tenant: str, response_id: str, conv_id: str,
                   length: int) -> None:
    """Map a response id to where its answer ended; a failure costs only the chaining."""
    try:
        await store.remember_response(tenant, response_id, conv_id, length)
    except Exception:
        log.exception("recording response id %s failed: previous_response_id will not "
                      "find it", response_id)
