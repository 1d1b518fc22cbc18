"""A resent history read once: what a client's request repeats of its last one, not parsed again.

A chat client resends its whole history every turn, and so does a client of the Responses
API with its default settings (the openai SDK's users and the Agents SDK): the body of the
turn before, its `messages` (or `input`) grown by the answer and the next question. At
1,000 turns that is 300 to 400 KB and thousands of JSON values, parsed, checked and
fingerprinted (a Responses input also made into chat messages) on every request: a
millisecond or three of every turn, most of what a Responses turn costs over a chat one
(benchmarks/responses_turn.py). So the last long request of each conversation is
remembered here by its bytes, with its items (messages, or input items) and their
messages. A request whose body begins with the same bytes up to the end of the
remembered one's last item, and goes on with more items, is parsed without them (the
bytes before and after them, spliced), and only its new items are checked and made into
messages; the earlier ones are taken as they were.

Equal bytes parse alike, so this gives what a whole parse gives, provided the remembered
offsets delimit exactly the items of the body's top-level array. That is checked: the
field's name occurs once in the body (no duplicate field, no nested one of that name,
which a splice could confuse), the bytes around the items, spliced, parse to the same body
with no items, and the bytes between parse as an array to the items themselves (the
first time a remembered body is gone on from; a duplicate of another field can hide
there). What the messages of the later items depend on is the same: the instructions,
and for Responses an earlier item that nothing after it joins (`Dialect.continues`).
Anything else (another client's formatting, a changed field, a text too long to
fingerprint here) is parsed whole, as before.

Kept per tenant (a hit is faster than a miss: one tenant must not learn, by timing, what
another sent), most recent first, to MAX_BYTES of remembered bodies in all, and only for
bodies of MIN_ITEMS items or more. The items and messages taken again are the same
objects the earlier request read: nothing after the parse changes a message in place
(prefix_cache.Fingerprinted's contract already), which the end-to-end tests check by
comparing every request's body with a whole parse once the conversation is over.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from proxy.loop.prefix_cache import Fingerprinted

# Remembered bodies, in all, per dialect: at most this many bytes by default
# (`server.resent_bodies_mb`; their parsed items and messages take 4 to 5 times as much).
MAX_BYTES = 8 << 20
# A shorter body is parsed whole: remembering it would save too little to be worth it.
MIN_ITEMS = 32
# Nor is a body shorter than this looked up (a short chat's, most requests): it takes
# microseconds to parse, less than finding its tenant.
MIN_BYTES = 4096
# Bodies are looked up by their tenant and first bytes; the conversations of a tenant
# that begin alike (one app's users: the same model and system prompt) share a bucket,
# each body of which is compared in turn (a comparison stops at the first byte that
# differs, after the shared part).
_HEAD_BYTES = 64
_BUCKET = 64
_SPACE = b" \t\r\n"

Key = tuple[str, bytes]
# Checks a body whose array holds only the items after the remembered ones, as a whole
# body is checked, and makes the messages of all its items (see ResentBodies.parse).
Extend = Callable[["Remembered", dict[str, Any]], Fingerprinted | None]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What a dialect's bodies keep their history in: the array `field` (its items), the
    field its messages depend on besides (`context`, a string or absent), and whether
    the messages of items after a remembered body's last item can be made on their own
    (`continues(last item, its message)`)."""

    field: str
    context: str | None
    continues: Callable[[Any, Any], bool]


@dataclass(slots=True, eq=False)
class Remembered:
    """A body's bytes up to the end of its last item (`prefix`), the bytes after them
    (`tail`, from the array's closing bracket on), where the items begin (`start`), the
    items as parsed, their messages, and the context's value."""

    prefix: bytes
    tail: bytes
    start: int
    items: list[Any]
    messages: Fingerprinted
    context: str | None
    # Whether the bytes between `start` and the prefix's end are known to be the items
    # alone (_delimit checks only the bytes around them).
    verified: bool = False


class ResentBodies:
    """The last long request of recent conversations, in one dialect (see the module
    docstring)."""

    def __init__(
        self, dialect: Dialect, max_bytes: int = MAX_BYTES, min_items: int = MIN_ITEMS
    ) -> None:
        self._dialect = dialect
        self._name = orjson.dumps(dialect.field)
        self._max_bytes = max_bytes
        self._min_items = min_items
        self._bytes = 0
        self._buckets: OrderedDict[Key, list[Remembered]] = OrderedDict()
        self._hits = 0

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    @property
    def hits(self) -> int:
        """Requests read from the one before (a `/metrics` counter)."""
        return self._hits

    @property
    def held_bytes(self) -> int:
        """The bytes of the bodies remembered (their parsed items take 4 to 5 times as
        much)."""
        return self._bytes

    @property
    def min_items(self) -> int:
        """The fewest items of a body remembered."""
        return self._min_items

    def parse(
        self, tenant: str, raw: bytes, extend: Extend
    ) -> tuple[dict[str, Any], Fingerprinted] | None:
        """The body and messages of `raw` when it continues a remembered body, else None:
        the caller parses it whole. `extend` is given the body with only the new items in
        its array, to check (it raises what the request's validation raises) and to make
        the messages of all its items from the remembered ones'; None: parsed whole. The
        body's array and the messages are the caller's own lists."""
        key = (tenant, raw[:_HEAD_BYTES])
        bucket = self._buckets.get(key)
        if not bucket:
            return None
        for earlier in bucket:
            if raw.startswith(earlier.prefix):
                break
        else:
            return None
        if not earlier.verified:
            # The first time only, the cost of the parse it saves; a body that fails
            # (a duplicate field among its items) is parsed whole from then on.
            if _items(earlier.prefix[earlier.start:]) != earlier.items:
                self._forget(key, earlier)
                return None
            earlier.verified = True
        at = _skip(raw, len(earlier.prefix))
        if raw[at : at + 1] != b",":
            return None  # no new item (a regenerate), or not an item after it
        at += 1
        if raw.find(self._name, at) >= 0:
            return None  # a second one: parsed whole, which knows which one counts
        try:
            body = orjson.loads(raw[: earlier.start] + raw[at:])
        except orjson.JSONDecodeError:
            return None  # parsed whole, for the error it names
        if not isinstance(body, dict):
            return None
        field = self._dialect.field
        new = body.get(field)
        if type(new) is not list or not new or self._context(body) != (True, earlier.context):
            return None
        # The bytes up to the array's end must be the new items alone, parsed as an array
        # of their own: a duplicate of another field among them would make them more, and
        # one of this field after them, its name written otherwise (`"mess\u0061ges"`,
        # which the search above does not find), would be what the splice read instead.
        # (The bytes after the array were checked to hold no such duplicate, by
        # _delimit's parse of them, here or when the earlier body was remembered.)
        if raw.endswith(earlier.tail):
            end = len(raw) - len(earlier.tail)
        else:
            found = _delimit(raw, body, field, self._name)
            if found is None or found[0] != earlier.start:
                return None
            end = found[1]
        if end <= at or _items(raw[at:end]) != new:
            return None
        messages = extend(earlier, body)
        if messages is None:
            return None
        self._hits += 1
        items = [*earlier.items, *new]
        body[field] = [*items]
        # Remembered in its place when a later request's messages can be made on from its
        # last item; else the earlier one stays, for the requests after this one (an
        # agent's tool calls and their results).
        if self._dialect.continues(items[-1], messages[-1]):
            self._forget(key, earlier)
            self._keep(key, Remembered(raw[:end], raw[end:], earlier.start, items, messages,
                                       earlier.context, verified=True))
        return body, Fingerprinted(messages, list(messages.fingerprints))

    def remember(self, tenant: str, raw: bytes, body: dict[str, Any],
                 messages: Sequence[dict[str, Any]]) -> None:
        """Remember a body parsed whole (`body`, the `messages` of its items, fingerprinted)
        when the next request may repeat it: see the module docstring."""
        field = self._dialect.field
        items = body.get(field)
        if (
            self._max_bytes <= 0
            or type(messages) is not Fingerprinted
            or not isinstance(items, list)
            or len(items) < self._min_items
            or not self._dialect.continues(items[-1], messages[-1])
        ):
            return
        fits, context = self._context(body)
        if not fits:
            return
        found = _delimit(raw, body, field, self._name)
        if found is None:
            return
        start, end = found
        # Copies: the caller's lists go on to the memory, which may add to them.
        kept = Fingerprinted(messages, list(messages.fingerprints))
        self._keep((tenant, raw[:_HEAD_BYTES]),
                   Remembered(raw[:end], raw[end:], start, list(items), kept, context))

    def _context(self, body: dict[str, Any]) -> tuple[bool, str | None]:
        """Whether the context field is a string or absent (else the body is not
        remembered), and its value."""
        if self._dialect.context is None:
            return True, None
        value = body.get(self._dialect.context)
        if value is None or type(value) is str:
            return True, value
        return False, None

    def _keep(self, key: Key, entry: Remembered) -> None:
        size = len(entry.prefix) + len(entry.tail)
        if size > self._max_bytes or len(entry.prefix) < _HEAD_BYTES:
            return  # (a shorter one is found by none of the bodies that go on from it)
        bucket = self._buckets.setdefault(key, [])
        self._buckets.move_to_end(key)
        for same in [e for e in bucket if e.prefix == entry.prefix]:
            bucket.remove(same)  # a regenerate's: the same bytes once is enough
            self._drop(same)
        bucket.insert(0, entry)
        self._bytes += size
        while len(bucket) > _BUCKET:
            self._drop(bucket.pop())
        while self._bytes > self._max_bytes:
            _, oldest = self._buckets.popitem(last=False)
            for dropped in oldest:
                self._drop(dropped)

    def _forget(self, key: Key, entry: Remembered) -> None:
        bucket = self._buckets[key]
        bucket.remove(entry)
        self._drop(entry)
        if not bucket:
            del self._buckets[key]

    def _drop(self, entry: Remembered) -> None:
        self._bytes -= len(entry.prefix) + len(entry.tail)


def _delimit(raw: bytes, body: dict[str, Any], field: str, name: bytes
             ) -> tuple[int, int] | None:
    """Where the items of `raw`'s top-level array `field` (`name` as JSON) begin and where
    its last one ends, else None. The bytes around them are checked (spliced, they parse to `body`
    with no items), not the bytes between: a duplicate field can hide among them
    (`[1],"tools":[2` between `"input":[` and `],"tools":[3]}` passes), so the caller
    parses those as an array too, unless it knows them already."""
    at = raw.find(name)
    if at < 0 or raw.find(name, at + 1) >= 0:
        return None
    colon = _skip(raw, at + len(name))
    if raw[colon : colon + 1] != b":":
        return None
    bracket = _skip(raw, colon + 1)
    if raw[bracket : bracket + 1] != b"[":
        return None
    start = bracket + 1
    keys = list(body)
    following = keys.index(field) + 1
    if following == len(keys):  # the last field: the body ends "]}"
        close = _skip_back(raw, len(raw))
        if raw[close - 1 : close] != b"}":
            return None
        close = _skip_back(raw, close - 1)
    else:  # the array ends before the next field's name
        next_name = raw.rfind(orjson.dumps(keys[following]))
        if next_name < start:
            return None
        comma = _skip_back(raw, next_name)
        if raw[comma - 1 : comma] != b",":
            return None
        close = _skip_back(raw, comma - 1)
    if raw[close - 1 : close] != b"]":
        return None
    end = _skip_back(raw, close - 1)
    if end <= start:
        return None
    try:
        around = orjson.loads(raw[:start] + raw[close - 1 :])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(around, dict) or around.get(field) != [] or list(around) != keys:
        return None
    # Compared as JSON, where 1 is not true (it is in Python).
    if orjson.dumps(around | {field: None}) != orjson.dumps(body | {field: None}):
        return None
    return start, end


def _items(region: bytes) -> Any:
    """What a region of items parses to as an array (None when it is not one)."""
    try:
        return orjson.loads(b"[" + region + b"]")
    except orjson.JSONDecodeError:
        return None


def _skip(raw: bytes, at: int) -> int:
    """The first offset from `at` on that is not JSON whitespace."""
    while raw[at : at + 1] and raw[at] in _SPACE:
        at += 1
    return at


def _skip_back(raw: bytes, at: int) -> int:
    """The offset right after the last byte before `at` that is not JSON whitespace."""
    while at > 0 and raw[at - 1] in _SPACE:
        at -= 1
    return at
