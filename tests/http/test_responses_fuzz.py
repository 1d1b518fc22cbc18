"""The Responses route under generated bodies (as tests/http/test_fuzz.py for chat): never
a 500, every answer that is not a 2xx an OpenAI-shaped error, every stream's error event
too. The memory path runs from the first token; the upstream is the scripted Responses
model, answering plainly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.http.app import create_app
from tests.http.conftest import settings_with
from tests.http.test_fuzz import check, headers, json_values, texts
from tests.loop.scripted import Answer
from tests.loop.scripted_responses import ResponsesModel

part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text"]),
                           "text": texts | json_values}),
    st.fixed_dictionaries({"type": st.just("input_image"),
                           "image_url": st.text(max_size=20) | json_values}),
    st.dictionaries(st.sampled_from(["type", "text", "file_id", "refusal"]), json_values,
                    max_size=3),
    json_values,
)
item = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "developer"]) | json_values},
        optional={"content": texts | st.lists(part, max_size=3) | json_values,
                  "type": st.just("message") | json_values,
                  "id": st.text(max_size=6)}),
    st.fixed_dictionaries(
        {"type": st.just("function_call")},
        optional={"call_id": st.sampled_from(["c1", "c2"]) | json_values,
                  "name": st.sampled_from(["f", "page_fault", "search_pages"]) | json_values,
                  "arguments": st.text(max_size=20) | json_values, "id": json_values}),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output")},
        optional={"call_id": st.sampled_from(["c1", "c2"]) | json_values,
                  "output": texts | st.lists(part, max_size=2) | json_values}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["reasoning", "web_search_call", "item_reference"])},
        optional={"id": json_values, "summary": json_values}),
    json_values,
)
tool = st.one_of(
    st.fixed_dictionaries({"type": st.just("function")},
                          optional={"name": st.sampled_from(["f", "page_fault"]) | json_values,
                                    "parameters": json_values}),
    st.fixed_dictionaries({"type": st.sampled_from(["web_search", "file_search"])}),
    json_values,
)
bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "llama-3"]) | json_values},
    optional={
        "input": texts | st.lists(item, max_size=5) | json_values,
        "instructions": texts | json_values,
        "stream": st.booleans() | json_values,
        "tools": st.lists(tool, max_size=2) | json_values,
        "tool_choice": st.sampled_from(["auto", "none", "required"]) | json_values,
        "max_output_tokens": st.integers(-5, 100_000) | json_values,
        "text": st.fixed_dictionaries({"format": json_values}) | json_values,
        "store": st.booleans() | json_values,
        "metadata": st.dictionaries(st.text(max_size=4), texts, max_size=3) | json_values,
        "previous_response_id": st.text(max_size=8) | json_values,
    },
)

sane_item = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": texts}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": st.just("c1"),
                           "name": st.sampled_from(["f", "page_fault"]),
                           "arguments": st.sampled_from(["{}", "not json"])}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": st.just("c1"),
                           "output": texts}),
    st.fixed_dictionaries({"type": st.just("reasoning"), "id": st.just("rs_1"),
                           "summary": st.just([])}),
)
valid_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-4o-mini", "llama-3"]),
     "input": st.lists(sane_item, min_size=1, max_size=6)},
    optional={"stream": st.booleans(), "instructions": texts,
              "tools": st.lists(tool, max_size=2).filter(
                  lambda ts: all(isinstance(t, dict) and isinstance(t.get("type"), str)
                                 and (t["type"] != "function" or isinstance(t.get("name"), str))
                                 for t in ts)),
              "tool_choice": st.sampled_from(["auto", "none", "required"])},
)


class App:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        model = ResponsesModel(lambda reading: Answer("Hi!"))
        settings = settings_with(
            vm={"mode": "strict", "context_budget": 2000, "activate_above": 0,
                "keepalive_s": 0.05},
        )
        self.app = create_app(settings, upstream_transport=httpx.MockTransport(model))
        self.lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://proxy"
        )

    def post(self, content: bytes, sent: dict[str, str]) -> httpx.Response:
        return self.loop.run_until_complete(asyncio.wait_for(
            self.http.post("/v1/responses", content=content, headers=sent), 20))

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    served = App()
    try:
        yield served
    finally:
        served.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=st.one_of(valid_bodies, bodies), sent_headers=headers)
def test_no_body_gets_a_500(app: App, body: dict[str, Any], sent_headers: dict[str, str]) -> None:
    response = app.post(json.dumps(body).encode(), sent_headers)
    check(response)
    if response.status_code == 200 and not response.headers["content-type"].startswith(
        "text/event-stream"
    ):
        assert response.json()["object"] == "response"
