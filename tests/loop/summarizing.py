"""A scripted summarizing model (`vm.summarizer`) beside the scripted chat model: requests
naming `SUMMARIZER` go to it, every other one to the chat model.

It answers the way a good summarizer should (proxy.vm.summary_prompt): a summary naming
the ids it read, an abstract for every id asked, one claim for the first user page. Queued
replies take precedence: a status, a text that is not the JSON asked for, or a wait on an
event (to hold a call open while the client's turn goes on).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

SUMMARIZER = "summarizer-model"
PROMPT_TOKENS = 300
COMPLETION_TOKENS = 40
_PAGE = re.compile(r"^\[(\w+)\] (\w+)", re.M)
_ABSTRACTS = re.compile(r"^ABSTRACTS: (.*)$", re.M)


@dataclass(frozen=True)
class Status:
    code: int


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Hold:
    """Answer well, but only once `release` is set."""

    release: asyncio.Event


Scripted = Status | Text | Hold


def summary_of(ids: list[str]) -> str:
    return f"MODEL SUMMARY of {ids[0]} to {ids[-1]}: chores and hobbies were discussed."


def claim_of(page_id: str) -> str:
    return f"The user keeps a chore diary entry {page_id}."


def abstract_of(page_id: str) -> str:
    return f"MODEL ABSTRACT of {page_id}."


@dataclass
class SummarizingModel:
    prompt_tokens: int = PROMPT_TOKENS
    requests: list[dict[str, Any]] = field(default_factory=list)
    queued: deque[Scripted] = field(default_factory=deque)

    def queue(self, *replies: Scripted) -> None:
        self.queued.extend(replies)

    async def __call__(self, body: dict[str, Any]) -> httpx.Response:
        self.requests.append(body)
        scripted = self.queued.popleft() if self.queued else None
        if isinstance(scripted, Hold):
            await scripted.release.wait()
        status, reply = self._respond(body, scripted)
        return httpx.Response(status, json=reply)

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and JSON body answering `body` (a held reply is answered at once)."""
        self.requests.append(body)
        return self._respond(body, self.queued.popleft() if self.queued else None)

    def _respond(
        self, body: dict[str, Any], scripted: Scripted | None
    ) -> tuple[int, dict[str, Any]]:
        if isinstance(scripted, Status):
            return scripted.code, {"error": {"message": "scripted", "type": "server_error",
                                             "param": None, "code": None}}
        text = scripted.text if isinstance(scripted, Text) else self.answer(body)
        return 200, {
            "id": f"chatcmpl-sum{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": SUMMARIZER,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": self.prompt_tokens,
                      "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": self.prompt_tokens + COMPLETION_TOKENS},
        }

    def answer(self, body: dict[str, Any]) -> str:
        task = body["messages"][1]["content"]
        pages = _PAGE.findall(task)
        ids = [page_id for page_id, _ in pages]
        asked = _ABSTRACTS.search(task).group(1).strip()  # type: ignore[union-attr]
        abstracts = [] if asked == "none" else asked.split(", ")
        users = [page_id for page_id, who in pages if who == "user"]
        claims = [] if "CLAIMS: none" in task or not users else [
            {"page": users[0], "text": claim_of(users[0])}]
        return json.dumps({
            "summary": summary_of(ids),
            "points": [f"point about {ids[0]}"],
            "abstracts": {page_id: abstract_of(page_id) for page_id in abstracts},
            "claims": claims,
        })


class Dispatch:
    """The respx side effect: summarizer calls to `summarizer`, the rest to `chat`."""

    def __init__(self, chat: Any, summarizer: SummarizingModel) -> None:
        self.chat = chat
        self.summarizer = summarizer
        self.summarizer_credentials: list[str | None] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("model") == SUMMARIZER:
            self.summarizer_credentials.append(request.headers.get("authorization"))
            return await self.summarizer(body)
        response: httpx.Response = await self.chat(request)
        return response
