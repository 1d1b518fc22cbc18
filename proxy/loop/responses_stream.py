"""The Responses event stream of a memory turn: several upstream streams, one client stream.

`ResponsesStream` is the Responses dialect of stream.stream_events. The client gets one
`response.created` (and `response.in_progress`), then every output item the upstream opens
that is not a VM call, relayed event by event as it arrives, with the output indexes
renumbered among the client's items and the proxy's own `sequence_number`s (0, 1, 2 ...
over the whole stream); and at the end one `response.completed` (or `.incomplete`) with
every item it was shown and the usage summed over the loop. A VM call's events are
consumed; the next iteration continues the same stream. A failure ends it with an `error`
event (which the openai SDK raises on) and `response.failed`.

From a native upstream the events are relayed (`_NativeIteration`); from a chat upstream
(`upstream.responses = "chat"`) the chunks, once stream.StreamSplitter has taken the VM
calls out, are written as Responses events (`_ChatIteration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

from proxy.loop.citations import CitationStripper
from proxy.loop.responses_output import new_id, response_object
from proxy.loop.responses_turn import ResponsesTurn
from proxy.loop.splitter import IterationOutcome, StreamSplitter
from proxy.loop.stream import StreamIteration
from proxy.loop.turn import Turn
from proxy.upstream.client import Reply
from proxy.upstream.responses import LIFECYCLE, EventAccumulator, ItemsMessage
from proxy.upstream.responses_format import item_type
from proxy.upstream.sse import SSEEvent, json_bytes
from proxy.upstream.usage import Usage


class ResponsesStream:
    """The client's stream over the whole turn (stream.StreamDialect)."""

    def __init__(self, rt: ResponsesTurn) -> None:
        self.rt = rt
        self.sequence = 0
        self.next_index = 0
        self.started = False
        self.iterations: list[list[dict[str, Any]]] = []  # items shown, per iteration
        # Page labels a model copies are stripped in every mode; citations in strict mode.
        self.citations = CitationStripper(citations=rt.turn.strip_citations)
        self._upstream: dict[str, Any] | None = None
        self._splitter: StreamSplitter | None = None

    async def open(self, turn: Turn, stack: AsyncExitStack, body: dict[str, Any]) -> Reply:
        return await self.rt.open(turn, stack, body)

    def iteration(self, iteration: int) -> StreamIteration:
        shown: list[dict[str, Any]] = []
        self.iterations.append(shown)
        if self.rt.native:
            return _NativeIteration(self, shown)
        turn, before = self.rt.turn, self._splitter
        self._splitter = StreamSplitter(
            turn.vm_tool_names, client_stream_id=turn.stream_id, created=turn.created,
            model=before.model if before is not None and before.model else None,
            citations=self.citations, id_salt=f"{turn.salt}/{iteration}",
        )
        return _ChatIteration(self, shown, self._splitter)

    # --- writing events ----------------------------------------------------------------------

    def event(self, data: Mapping[str, Any]) -> bytes:
        """One event, framed as OpenAI frames them, with the stream's next sequence number."""
        out = dict(data)
        out["sequence_number"] = self.sequence
        self.sequence += 1
        kind = str(out.get("type") or "message")
        return b"event: " + kind.encode() + b"\ndata: " + json_bytes(out) + b"\n\n"

    def allocate(self) -> int:
        index, self.next_index = self.next_index, self.next_index + 1
        return index

    def opening(self, upstream: Mapping[str, Any] | None) -> list[bytes]:
        """`response.created` and `response.in_progress`, once."""
        if self.started:
            return []
        self.started = True
        if upstream:
            self._upstream = dict(upstream)
        obj = self._snapshot("in_progress", None)
        return [self.event({"type": "response.created", "response": obj}),
                self.event({"type": "response.in_progress", "response": obj})]

    def _snapshot(self, status: str, usage: Any, **extra: Any) -> dict[str, Any]:
        rt = self.rt
        output = [item for items in self.iterations for item in items]
        return response_object(rt.request, self._upstream, response_id=rt.response_id,
                               created_at=rt.created_at, status=status, output=output,
                               usage=usage, **extra)

    def note_upstream(self, response: Mapping[str, Any]) -> None:
        if response:
            self._upstream = dict(response)

    # --- ending ------------------------------------------------------------------------------

    async def close(self, outcome: IterationOutcome, usage: Usage | None) -> list[bytes]:
        rt = self.rt
        if self.citations is not None:
            rt.turn.note_citations(self.citations.ids)
        out = self.opening(None)
        message = outcome.message
        upstream = message.response if isinstance(message, ItemsMessage) else self._upstream
        status = rt.status(message)
        obj = await rt.finish(self.iterations, usage, status, upstream or None)
        out.append(self.event({"type": f"response.{status}", "response": obj}))
        return out

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        out = self.opening(None)
        fields = {"type": error.get("type") or "server_error", "code": error.get("code"),
                  "message": str(error.get("message") or "upstream error"),
                  "param": error.get("param")}
        out.append(self.event({"type": "error", "error": fields}))
        failed = self._snapshot("failed", None, error=fields)
        out.append(self.event({"type": "response.failed", "response": failed}))
        return out


class _NativeIteration:
    """One Responses upstream stream: relayed but for its VM calls."""

    def __init__(self, stream: ResponsesStream, shown: list[dict[str, Any]]) -> None:
        self.stream = stream
        self.shown = shown
        self.vm_names = stream.rt.turn.vm_tool_names
        self.accumulator = EventAccumulator()
        self.hidden: set[int] = set()  # upstream output indexes of VM calls
        self.index: dict[int, int] = {}  # upstream output index -> the client's
        self.closed: dict[int, dict[str, Any]] = {}  # client index -> item as shown
        self.texts: dict[tuple[int, int], list[str]] = {}  # text shown per part (strict)

    def feed(self, event: SSEEvent) -> list[bytes]:
        data = self.accumulator.feed_event(event)
        if data is None:
            return []
        stream = self.stream
        kind = data.get("type")
        out = stream.opening(self.accumulator.response) if not stream.started else []
        if kind in LIFECYCLE or kind == "error":
            stream.note_upstream(self.accumulator.response)
            return out  # the loop ends the client's response itself, once
        index = data.get("output_index")
        if not isinstance(index, int):
            out.append(stream.event(data))
            return out
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item_type(item) == "function_call" and item.get("name") in self.vm_names:
                self.hidden.add(index)
        if index in self.hidden:
            return out
        client = self.index.get(index)
        if client is None:
            client = self.index[index] = stream.allocate()
        data = {**data, "output_index": client}
        if stream.citations is not None:
            return out + [stream.event(d) for d in self._strip(data, index)]
        if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            self.closed[client] = data["item"]
        out.append(stream.event(data))
        return out

    def _strip(self, data: dict[str, Any], index: int) -> list[dict[str, Any]]:
        """Strict mode: citations out of the text, the done events saying what was shown."""
        citations = self.stream.citations
        assert citations is not None
        kind = data.get("type")
        key = (index, int(data.get("content_index") or 0))
        if kind == "response.output_text.delta":
            text = citations.feed(str(data.get("delta") or ""))
            self.texts.setdefault(key, []).append(text)
            return [{**data, "delta": text}] if text else []
        out: list[dict[str, Any]] = []
        if kind == "response.output_text.done":
            tail = citations.flush()
            if tail:
                self.texts.setdefault(key, []).append(tail)
                out.append({"type": "response.output_text.delta",
                            "item_id": data.get("item_id"), "output_index": data["output_index"],
                            "content_index": key[1], "delta": tail, "logprobs": []})
            out.append({**data, "text": "".join(self.texts.get(key, ()))})
        elif kind == "response.content_part.done" and isinstance(data.get("part"), dict):
            part = data["part"]
            if part.get("type") == "output_text":
                part = {**part, "text": "".join(self.texts.get(key, ()))}
            out.append({**data, "part": part})
        elif kind == "response.output_item.done" and isinstance(data.get("item"), dict):
            item = self._shown_item(index, data["item"])
            self.closed[data["output_index"]] = item
            out.append({**data, "item": item})
        else:
            out.append(data)
        return out

    def _shown_item(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        if item_type(item) != "message" or not isinstance(item.get("content"), list):
            return item
        parts = []
        for position, part in enumerate(item["content"]):
            if isinstance(part, dict) and part.get("type") == "output_text":
                part = {**part, "text": "".join(self.texts.get((index, position), ()))}
            parts.append(part)
        return {**item, "content": parts}

    def end(self) -> list[bytes]:
        """Items the upstream opened but never closed (a stream cut short) are closed, so
        the client's final output holds every item it was shown."""
        out: list[bytes] = []
        for index, client in self.index.items():
            if client not in self.closed:
                item = self._shown_item(index, self.accumulator.item(index))
                self.closed[client] = item
                out.append(self.stream.event({"type": "response.output_item.done",
                                              "output_index": client, "item": item}))
        self.shown.extend(self.closed[c] for c in sorted(self.closed))
        return out

    def outcome(self) -> IterationOutcome:
        message = self.accumulator.result()
        vm: list[dict[str, Any]] = []
        client: list[dict[str, Any]] = []
        for call in message.tool_calls:
            name = (call.get("function") or {}).get("name")
            (vm if name in self.vm_names else client).append(call)
        return IterationOutcome(
            vm_calls=vm, client_calls=client, content=message.content, forwarded_content="",
            finish_reason=message.finish_reason, usage=message.usage, error=message.error,
            message=message,
        )

    @property
    def finished(self) -> bool:
        """`response.completed` (or `.incomplete`, `.failed`, `error`) came."""
        return self.accumulator.finished


class _ChatIteration:
    """One chat-completions upstream stream, its client chunks written as Responses
    events: reasoning, then text, then each client call, each its own output item."""

    def __init__(
        self, stream: ResponsesStream, shown: list[dict[str, Any]], splitter: StreamSplitter
    ) -> None:
        self.stream = stream
        self.shown = shown
        self.splitter = splitter
        self.open: dict[str, tuple[int, dict[str, Any]]] = {}  # kind -> (index, item)
        self.calls: dict[int, tuple[int, dict[str, Any]]] = {}  # chat index -> (index, item)

    def feed(self, event: SSEEvent) -> list[bytes]:
        # [DONE] too: the splitter notes it (a stream without it or a finish is unfinished).
        out = self.stream.opening(None) if not event.is_done else []
        for chunk in self.splitter.feed_event(event):
            out.extend(self._chunk(chunk))
        return out

    def _chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            for key in ("reasoning_content", "reasoning"):
                if isinstance(delta.get(key), str) and delta[key]:
                    out += self._text("reasoning", delta[key])
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._close("reasoning")
                out += self._text("message", delta["content"])
            for call in delta.get("tool_calls") or ():
                out += self._call(call)
        return out

    def _text(self, kind: str, text: str) -> list[bytes]:
        stream = self.stream
        out: list[bytes] = []
        if kind not in self.open:
            index = stream.allocate()
            if kind == "message":
                item: dict[str, Any] = {"id": new_id("msg"), "type": "message",
                                        "status": "in_progress", "content": [],
                                        "role": "assistant"}
                part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            else:
                item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
                part = {"type": "reasoning_text", "text": ""}
            self.open[kind] = (index, {**item, "text": ""})
            out.append(stream.event({"type": "response.output_item.added",
                                     "output_index": index, "item": item}))
            out.append(stream.event({"type": "response.content_part.added",
                                     "item_id": item["id"], "output_index": index,
                                     "content_index": 0, "part": part}))
        index, item = self.open[kind]
        item["text"] += text
        event = "response.output_text.delta" if kind == "message" else \
            "response.reasoning_text.delta"
        body: dict[str, Any] = {"type": event, "item_id": item["id"], "output_index": index,
                                "content_index": 0, "delta": text}
        if kind == "message":
            body["logprobs"] = []
        out.append(stream.event(body))
        return out

    def _close(self, kind: str) -> list[bytes]:
        if kind not in self.open:
            return []
        index, item = self.open.pop(kind)
        text = item.pop("text")
        if kind == "message":
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            done = {**item, "status": "completed", "content": [part]}
            text_event = {"type": "response.output_text.done", "logprobs": [], "text": text}
        else:
            part = {"type": "reasoning_text", "text": text}
            done = {**item, "content": [part]}
            text_event = {"type": "response.reasoning_text.done", "text": text}
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self.shown.append(done)
        stream = self.stream
        return [stream.event({**text_event, **where}),
                stream.event({"type": "response.content_part.done", **where, "part": part}),
                stream.event({"type": "response.output_item.done", "output_index": index,
                              "item": done})]

    def _call(self, call: Mapping[str, Any]) -> list[bytes]:
        stream = self.stream
        out: list[bytes] = []
        position = int(call.get("index") or 0)
        function = call.get("function") or {}
        if position not in self.calls:
            out += self._close("reasoning") + self._close("message")
            index = stream.allocate()
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": str(call.get("id") or ""),
                    "name": str(function.get("name") or "")}
            self.calls[position] = (index, item)
            out.append(stream.event({"type": "response.output_item.added",
                                     "output_index": index, "item": dict(item)}))
        index, item = self.calls[position]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            out.append(stream.event({"type": "response.function_call_arguments.delta",
                                     "item_id": item["id"], "output_index": index,
                                     "delta": arguments}))
        return out

    def end(self) -> list[bytes]:
        out: list[bytes] = []
        for chunk in self.splitter.end():
            out.extend(self._chunk(chunk))
        out += self._close("reasoning") + self._close("message")
        for index, item in self.calls.values():
            done = {**item, "status": "completed", "arguments": item["arguments"] or "{}"}
            self.shown.append(done)
            out.append(self.stream.event({"type": "response.function_call_arguments.done",
                                          "item_id": item["id"], "output_index": index,
                                          "arguments": done["arguments"]}))
            out.append(self.stream.event({"type": "response.output_item.done",
                                          "output_index": index, "item": done}))
        return out

    def outcome(self) -> IterationOutcome:
        return self.splitter.outcome()

    @property
    def finished(self) -> bool:
        return self.splitter.accumulator.finished
