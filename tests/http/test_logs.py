"""One structured line per request, and never a key or message content in it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest

from proxy import logs
from tests.http.conftest import CHAT, completion, edge

SECRET_KEY = "sk-client-secret-123"
SECRET_TEXT = "my locker code is 4417"


@pytest.fixture
def log_stream() -> Iterator[io.BytesIO]:
    """`logs.configure()` pointed at a byte buffer; the logging setup restored after."""
    names = ("vm_proxy", "uvicorn", "uvicorn.error")
    saved = [
        (
            logging.getLogger(n),
            logging.getLogger(n).handlers[:],
            logging.getLogger(n).level,
            logging.getLogger(n).propagate,
        )
        for n in names
    ]
    saved_sink = logs._sink.stream
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
    logs.configure("info", stream=text)
    try:
        yield raw
    finally:
        logs._sink.stream = saved_sink
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def lines(raw: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in raw.getvalue().splitlines()]


async def test_one_line_per_request_with_route_status_latency_and_bytes(
    log_stream: io.BytesIO,
) -> None:
    def upstream(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion(), headers={"x-request-id": "req_up_1"})

    async with edge(upstream) as proxy:
        body = {**CHAT, "messages": [{"role": "user", "content": SECRET_TEXT}]}
        await proxy.http.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {SECRET_KEY}"}
        )
        await proxy.http.get("/healthz")  # probes stay out of the access log
    access = [line for line in lines(log_stream) if line["logger"] == "vm_proxy.access"]
    assert len(access) == 1
    line = access[0]
    assert line["method"] == "POST"
    assert line["route"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert isinstance(line["upstream_ms"], float) and line["upstream_ms"] >= 0
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= line["upstream_ms"]
    assert line["bytes_in"] == len(orjson.dumps(body))
    assert line["bytes_out"] == len(orjson.dumps(completion()))
    assert line["upstream_request_id"] == "req_up_1"
    assert line["request_id"]
    everything = log_stream.getvalue().decode()
    assert SECRET_KEY not in everything
    assert SECRET_TEXT not in everything


async def test_request_ids_differ(log_stream: io.BytesIO) -> None:
    async with edge(lambda _: httpx.Response(200, json={"data": []})) as proxy:
        for _ in range(3):
            await proxy.http.get("/v1/models")
    ids = [line["request_id"] for line in lines(log_stream) if line["logger"] == "vm_proxy.access"]
    assert len(set(ids)) == 3


async def test_the_access_log_obeys_its_level(log_stream: io.BytesIO) -> None:
    logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.WARNING)
    try:
        async with edge(lambda _: httpx.Response(200, json={"data": []})) as proxy:
            await proxy.http.get("/v1/models")
    finally:
        logging.getLogger(logs.ACCESS_LOGGER).setLevel(logging.NOTSET)
    assert [line for line in lines(log_stream) if line["logger"] == "vm_proxy.access"] == []


def test_other_records_are_json_with_their_extra_fields(log_stream: io.BytesIO) -> None:
    logs.log.warning("upstream stream broke", extra={"reason": "reset", "color_message": "x"})
    (line,) = lines(log_stream)
    assert line["level"] == "warning"
    assert line["msg"] == "upstream stream broke"
    assert line["reason"] == "reset"
    assert "color_message" not in line


def test_without_configure_access_lines_go_through_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saved = logs._sink.stream
    logs._sink.stream = None
    try:
        with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):
            logs.log_request(
                method="GET", route="/v1/models", path="/v1/models", status=200,
                duration_ms=1.0, upstream_ms=0.5, bytes_in=0, bytes_out=10, request_id="r1",
            )  # fmt: skip
    finally:
        logs._sink.stream = saved
    (record,) = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert record.__dict__["route"] == "/v1/models"
    assert record.__dict__["status"] == 200


async def test_an_upstream_failure_is_logged_with_its_reason(log_stream: io.BytesIO) -> None:
    """The client's 502 names why; the operator's log did not (the access line has the
    status alone)."""

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    async with edge(refused) as proxy:
        response = await proxy.http.post("/v1/chat/completions", headers={
            "authorization": f"Bearer {SECRET_KEY}"}, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": SECRET_TEXT}]})
    assert response.status_code == 502
    (failed,) = [line for line in lines(log_stream) if line["msg"].startswith("upstream failed")]
    assert failed["level"] == "warning" and "Connection refused" in failed["msg"]
    assert failed["status"] == 502
    assert SECRET_KEY not in log_stream.getvalue().decode()


def test_a_store_outage_is_one_line_and_a_bug_keeps_its_traceback(
    log_stream: io.BytesIO,
) -> None:
    """While PostgreSQL restarted, every request logged a multi-KB traceback (twice for a
    short chat): 10.7 MB in a minute, in a reviewer's run."""
    from proxy.loop.failures import log_failure
    from proxy.store.base import StoreError

    for failure in (StoreError("the database system is shutting down"), KeyError("bug")):
        try:
            raise failure
        except Exception:
            log_failure("%s; answering as a pass-through", "VM preparation failed")
    outage, bug = lines(log_stream)
    assert outage["level"] == "warning" and "shutting down" in outage["msg"]
    assert "Traceback" not in json.dumps(outage)
    assert bug["level"] == "error" and "Traceback" in json.dumps(bug)


def test_asyncpg_records_are_json_lines(log_stream: io.BytesIO) -> None:
    logging.getLogger("asyncpg.pool").warning("Failed to restore the pool connection floor")
    (line,) = lines(log_stream)
    assert line["logger"] == "asyncpg.pool"
