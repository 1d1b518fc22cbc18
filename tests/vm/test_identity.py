from __future__ import annotations

import time

from proxy.vm.identity import chain_hashes, tenant_id


def test_tenant_id_is_a_keyed_hash_never_the_key() -> None:
    key = "sk-live-abcdef123456"
    tenant = tenant_id("secret", key, "default")
    assert tenant.startswith("t_") and key not in tenant and "abcdef" not in tenant
    assert tenant == tenant_id("secret", key, "default")
    assert tenant != tenant_id("other-secret", key, "default")
    assert tenant != tenant_id("secret", key + "x", "default")
    assert tenant_id("secret", None, "default") == "default"
    assert tenant_id("secret", "", "anon") == "anon"
    assert tenant_id("s" * 200, key, "d").startswith("t_")


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi", "name": "ana"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ],
    },
]


def test_chain_is_prefix_stable_and_continues_from_prev() -> None:
    full = chain_hashes("t1", MESSAGES)
    assert len(full) == len(MESSAGES) and len(set(full)) == len(full)
    assert chain_hashes("t1", MESSAGES[:3]) == full[:3]
    assert chain_hashes("t1", MESSAGES[3:], prev=full[2]) == full[3:]
    assert chain_hashes("t2", MESSAGES) != full
    assert all(len(h) == 32 for h in full)


def _first_changed(variant: list[dict[str, object]]) -> int:
    base = chain_hashes("t", MESSAGES)
    other = chain_hashes("t", variant)
    return next(i for i, (a, b) in enumerate(zip(base, other, strict=True)) if a != b)


def test_every_canonical_field_counts() -> None:
    def edit(index: int, **change: object) -> list[dict[str, object]]:
        copy = [dict(m) for m in MESSAGES]
        copy[index] = {**copy[index], **change}
        return copy

    assert _first_changed(edit(0, content="Be briefer.")) == 0
    assert _first_changed(edit(1, name="bob")) == 1
    assert _first_changed(edit(1, role="assistant")) == 1
    assert _first_changed(edit(3, tool_call_id="c2")) == 3
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 2}'}}
    assert _first_changed(edit(2, tool_calls=[call])) == 2
    parts = [{"type": "text", "text": "look!"}, MESSAGES[4]["content"][1]]  # type: ignore[index]
    assert _first_changed(edit(4, content=parts)) == 4


def test_equivalent_forms_hash_alike() -> None:
    a = chain_hashes("t", [{"role": "assistant", "content": None}])
    b = chain_hashes("t", [{"role": "assistant", "content": ""}])
    assert a == b
    # Key order inside content parts does not matter.
    c = chain_hashes("t", [{"role": "user", "content": [{"type": "text", "text": "x"}]}])
    d = chain_hashes("t", [{"role": "user", "content": [{"text": "x", "type": "text"}]}])
    assert c == d
    # Fields are length-prefixed: moving bytes between fields changes the hash.
    e = chain_hashes("t", [{"role": "user", "content": "ab", "name": "c"}])
    f = chain_hashes("t", [{"role": "user", "content": "a", "name": "bc"}])
    assert e != f


def test_hashing_a_long_resend_is_fast_enough_to_do_per_request() -> None:
    messages = [
        {"role": "user" if i % 2 else "assistant", "content": "word " * 80} for i in range(2000)
    ]
    start = time.perf_counter()
    hashes = chain_hashes("t", messages)
    elapsed = time.perf_counter() - start
    assert len(hashes) == 2000
    # Generous bound (shared 2-core machine): about 2 us per message when measured.
    assert elapsed < 1.0
