"""A huge text is hashed and scanned a slice at a time, with the results of one pass over
the whole (issue 13: one C call over 30 MB holds the GIL for tens of milliseconds)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from proxy.tokens import counter_for_model
from proxy.vm import identity, ingest
from proxy.vm.bounds import SLICE_CHARS, encoded_slices, has_at_least
from proxy.vm.identity import chain_hashes
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import PageKind


def test_encoded_slices_join_to_the_whole_encoding() -> None:
    text = "aé€😀" * (SLICE_CHARS // 2) + "z"
    pieces = list(encoded_slices(text))
    assert len(pieces) > 1
    assert b"".join(pieces) == text.encode()
    assert list(encoded_slices("short")) == [b"short"]
    lone = "\ud800" * (SLICE_CHARS + 1)
    assert b"".join(encoded_slices(lone, "surrogatepass")) == lone.encode(
        "utf-8", "surrogatepass")
    with pytest.raises(UnicodeEncodeError):
        list(encoded_slices(lone))


@pytest.mark.parametrize("at", [0, 5, SLICE_CHARS - 3, SLICE_CHARS - 2, SLICE_CHARS - 1,
                                SLICE_CHARS, 2 * SLICE_CHARS - 1, 3 * SLICE_CHARS - 2])
def test_has_at_least_counts_as_str_count_does(at: int) -> None:
    base = ["a"] * (3 * SLICE_CHARS + 10)
    for second in (None, at + 3, at + 2, len(base) - 3):
        chars = list(base)
        chars[at : at + 3] = "```"
        if second is not None:
            chars[second : second + 3] = "```"
        text = "".join(chars)[: len(base)]
        for count in (1, 2, 3):
            assert has_at_least(text, "```", count) == (text.count("```") >= count)


def test_a_huge_message_with_code_fences_anywhere_is_an_artifact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanned: list[int] = []

    def spy(text: str, part: str, count: int) -> bool:
        scanned.append(len(text))
        return has_at_least(text, part, count)

    monkeypatch.setattr(ingest, "has_at_least", spy)
    counter = counter_for_model("gpt-4o-mini")
    fenced = "x" * (SLICE_CHARS - 1) + "```code```" + "y" * (2 * SLICE_CHARS)
    plain = "x" * (SLICE_CHARS - 1) + "```code" + "y" * (2 * SLICE_CHARS)
    kinds = []
    for text in (fenced, plain):
        result = ingest_messages([{"role": "user", "content": text}], first_position=0,
                                 counters=Counters(), counter=counter, segment_turns=8)
        kinds.append(next(p.kind for p in result.pages if p.is_message))
    assert kinds == [PageKind.ARTIFACT, PageKind.TRANSCRIPT]
    assert scanned == [len(fenced), len(plain)]  # a slice at a time, not str.count


def _reference_chain_hash(tenant_root: bytes, role: str, text: str) -> str:
    """What a message's chain hash was before slicing: its content encoded at once."""
    h = hashlib.blake2b(tenant_root, digest_size=16, person=b"vm-proxy.chain")
    for tag, value in ((b"r", role.encode()), (b"s", text.encode())):
        h.update(tag + len(value).to_bytes(8, "little"))
        h.update(value)
    return h.hexdigest()


def test_a_huge_text_chain_hashes_as_when_encoded_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "é€a" * SLICE_CHARS
    short = [{"role": "user", "content": "hello"}]
    root = bytes.fromhex(chain_hashes("t", short, prev=None)[0])  # any prior hash
    expected = _reference_chain_hash(root, "user", text)
    fed: list[int] = []
    real = hashlib.blake2b

    def counting(*args: Any, **kwargs: Any) -> Any:
        h = real(*args, **kwargs)

        class Spy:
            def update(self, data: bytes) -> None:
                fed.append(len(data))
                h.update(data)

            def digest(self) -> bytes:
                return h.digest()

        return Spy()

    monkeypatch.setattr(identity.hashlib, "blake2b", counting)
    got = chain_hashes("t", [{"role": "user", "content": text}], prev=root.hex())
    assert got == [expected]
    assert max(fed) < len(text)
