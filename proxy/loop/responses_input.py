"""A Responses request's `instructions` and `input` as the chat messages the memory reads,
checked and fingerprinted in the pass that makes them.

Each item becomes chat messages as proxy.upstream.responses_format says. A client that
resends its history sends mostly plain `{"role": ..., "content": "..."}` items, which are
chat messages already: one comprehension finds them and their fingerprints
(proxy.loop.prefix_cache), and the runs of them between the other items are taken whole.
The messages come back carrying their fingerprints (prefix_cache.Fingerprinted), so that
placing them in the store (Conversations.place) does not go over the history again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from proxy.loop.prefix_cache import (
    LONG_TEXT_CHARS,
    Fingerprinted,
    fingerprint,
    short_fingerprints,
)
from proxy.upstream.responses_format import (
    INSTRUCTIONS,
    ITEMS,
    OUTPUT_TYPES,
    ItemCheck,
    assistant_message,
    item_type,
    role_message,
    tool_message,
)

__all__ = ["check_input_items", "ends_a_turn", "extend_messages", "input_messages"]

# Tuples, not sets: a role that is a list (before validation) is not hashable.
_ROLES = ("user", "system", "developer")
_PLAIN_ROLES = ("user", "assistant", "system", "developer")
# What _scan gives an item that is not a plain message: never a fingerprint (`hash` never
# gives -1, which means an error in C), and an int, which list.index compares quickly.
_OTHER = -1


def input_messages(
    instructions: Any, input_: Any, check: ItemCheck | None = None
) -> list[dict[str, Any]]:
    """The chat messages of a request's `instructions` and `input`. `check`, when given, is
    called on each item before it is read (`input`'s first), except the plain text
    messages that are chat messages already: the request's validation (which raises on an
    item it refuses), so that a resent history is walked once. The list is a
    Fingerprinted one unless a text is too long to fingerprint here (LONG_TEXT_CHARS).
    The messages of `instructions` are marked so (responses_format.INSTRUCTIONS)."""
    head: list[dict[str, Any]] = []
    if isinstance(instructions, str) and instructions:
        head = [{"role": "system", "content": instructions, INSTRUCTIONS: True}]
    if isinstance(input_, list):
        messages = _items_to_messages(input_, "input", check, head)
    else:
        messages = [*head, {"role": "user", "content": input_}] if isinstance(
            input_, str) else head
        prints = short_fingerprints(messages)
        messages = messages if prints is None else Fingerprinted(messages, prints)
    if isinstance(instructions, list):
        before = _items_to_messages(instructions, "instructions", check, [])
        # Copies: a plain item is its own message (the request's, never changed).
        before[:] = [{**message, INSTRUCTIONS: True} for message in before]
        messages[:0] = before
        if type(messages) is Fingerprinted and type(before) is Fingerprinted:
            messages.fingerprints[:0] = before.fingerprints
        elif type(messages) is Fingerprinted:
            messages = [*messages]  # (a text of the instructions is long)
    return messages


def ends_a_turn(item: Any, message: Any) -> bool:
    """Whether `item`, made into `message`, is a plain user message, as it is: after it the
    conversion starts afresh (nothing after it joins an item before it), so the messages
    of an input that goes on from it can be made by extend_messages."""
    return (message is item and type(item) is dict and len(item) == 2
            and item.get("role") == "user" and type(item.get("content")) is str)


def extend_messages(
    earlier: Fingerprinted, last: Any, new: Sequence[Any], first: int,
    check: ItemCheck | None = None,
) -> Fingerprinted | None:
    """The messages of a request's input that is an earlier one's (whose messages are
    `earlier`, its last item `last`) and then `new`, the items from index `first` on: what
    input_messages makes of the whole, for the new items' conversion only. `last` must
    be a plain user message: the conversion starts afresh after it (nothing joins an
    item before it to one after), and it is one message, earlier's last. `check` is
    called as input_messages calls it, with each new item's index in the whole input.
    None when a new text is too long to fingerprint here (LONG_TEXT_CHARS)."""

    def checked(where: str, index: int, item: Any) -> None:
        if check is not None:
            check(where, first - 1 + index, item)

    # `last` goes first, as the neighbour an answer after it is judged by (_plain_and_said).
    made = _items_to_messages([last, *new], "input", checked, [])
    if type(made) is not Fingerprinted or made[0] is not last:
        return None
    return Fingerprinted([*earlier, *made[1:]], [*earlier.fingerprints, *made.fingerprints[1:]])


def check_input_items(instructions: Any, input_: Any, check: ItemCheck) -> None:
    """What input_messages(instructions, input_, check) checks, in the same order, without
    making messages: for a request relayed as it is (`vm.mode` off), whose messages nobody
    reads. (One difference no request can see: an assistant's text longer than
    LONG_TEXT_CHARS right after another assistant-side item is checked there, not here;
    a two-field message of text passes every check.)"""
    for where, items in (("input", input_), ("instructions", instructions)):
        if not isinstance(items, list):
            continue
        # As _walk: a two-field message of text passes unchecked, but an empty assistant's.
        unplain = [index for index, item in enumerate(items)
                   if not (type(item) is dict and len(item) == 2
                           and type(text := item.get("content")) is str
                           and ((role := item.get("role")) in _ROLES
                                or role == "assistant" and text))]
        for index in unplain:
            item = items[index]
            if not _said(item):
                check(where, index, item)


def _items_to_messages(
    items: Sequence[Any], where: str, check: ItemCheck | None, head: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`head` and the messages of `items`: a Fingerprinted list unless a text is long."""
    scan = _scan(items)
    taken = _plain_and_said(items, scan, head)
    return taken if taken is not None else _walk(items, scan, where, check, head)


def _plain_and_said(
    items: Sequence[Any], scan: list[int], head: list[dict[str, Any]]
) -> Fingerprinted | None:
    """`_walk`'s messages for the history a Responses client resends most: plain messages
    and the model's answers as it was given them (message items of one `output_text`
    part), no answer beside another assistant-side item (which `_walk` would join to it).
    None for any other input, which `_walk` goes over item by item."""
    # The answers are converted in one comprehension and put in place in a copy of the
    # items; everything else is taken as it is, with the fingerprint the scan found. (The
    # plain messages beside an answer, which the scan found, have a "role".) An answer's
    # item is carried as it is, not copied as assistant_message copies it: the request's
    # parse made it and nothing changes it, and copying a thousand of them was a third
    # of this function's time.
    others = [i for i, found in enumerate(scan) if found == _OTHER]
    last = len(items) - 1
    said = [
        {"role": "assistant", "content": text, ITEMS: [item]}
        if type(item := items[i]) is dict
        and item.get("type") == "message" and item.get("role") == "assistant"
        and "id" in item
        and type(content := item.get("content")) is list and len(content) == 1
        and type(part := content[0]) is dict and part.get("type") == "output_text"
        and type(text := part.get("text")) is str and text and len(text) <= LONG_TEXT_CHARS
        and (i == 0 or scan[i - 1] != _OTHER and items[i - 1]["role"] != "assistant")
        and (i == last or scan[i + 1] != _OTHER and items[i + 1]["role"] != "assistant")
        else None
        for i in others
    ]
    if None in said:
        return None
    found = short_fingerprints(head)
    if found is None:
        return None
    messages: list[dict[str, Any]] = [*head, *items]
    prints = [*found, *scan]
    offset = len(head)
    for i, message in zip(others, said, strict=True):
        messages[offset + i] = message  # type: ignore[assignment]
        prints[offset + i] = hash(("assistant", message["content"], None, None, None))  # type: ignore[index]
    return Fingerprinted(messages, prints)


def _walk(
    items: Sequence[Any], scan: list[int], where: str, check: ItemCheck | None,
    head: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """`head` and the messages of `items`, item by item: a Fingerprinted list unless a
    text is long."""
    # On every request of a client that resends its history; the runs of plain messages
    # are taken whole, with the fingerprints the scan found for them. (Lists of thousands
    # are made as few times as may be: each is a fresh block from the C allocator.)
    found = short_fingerprints(head)
    fingerprinted = found is not None
    prints = found if found is not None else []
    messages = Fingerprinted(head, prints)
    pending: list[Mapping[str, Any]] = []  # assistant-side items of one turn

    def add(message: dict[str, Any]) -> None:
        nonlocal fingerprinted
        messages.append(message)
        content = message.get("content")
        if type(content) is str and len(content) > LONG_TEXT_CHARS:
            fingerprinted = False  # its digest is for a worker thread (offload.fingerprinted)
        if fingerprinted:
            prints.append(fingerprint(message))

    # The last message is a plain assistant message that the next item, if it is an
    # assistant-side one too, joins.
    joinable = False
    start = 0
    end = len(items)
    while True:
        try:
            index = scan.index(_OTHER, start)
        except ValueError:
            index = end
        if start < index:  # a run of plain messages
            while pending and start < index:
                plain = items[start]
                if plain["role"] == "assistant":
                    pending.append(plain)
                else:
                    add(assistant_message(pending))
                    pending = []
                    messages.append(plain)
                    prints.append(scan[start])
                start += 1
            if start < index:
                messages += items[start:index]
                if start == 0 and not prints:
                    prints = messages.fingerprints = scan if index == end else scan[:index]
                else:
                    prints += scan[start:index]
                joinable = items[index - 1]["role"] == "assistant"
            else:
                joinable = False
        start = index + 1
        if index == end:
            break
        item = items[index]
        if type(item) is dict and len(item) == 2 and type(item.get("content")) is str:
            role = item.get("role")
            if role in _ROLES:
                if pending:
                    add(assistant_message(pending))
                    pending = []
                add(item)
                joinable = False
                continue
            if role == "assistant" and not pending and item["content"]:
                add(item)
                joinable = True
                continue
        if check is not None and not _said(item):
            check(where, index, item)
        if not isinstance(item, dict):
            continue
        role = item.get("role")
        kind = item_type(item)
        if kind == "message" and role in _ROLES or kind in OUTPUT_TYPES:
            if pending:
                add(assistant_message(pending))
                pending = []
            add(role_message(item) if kind == "message" else tool_message(item))
            joinable = False
        else:
            if joinable:
                pending.append(messages.pop())
                if len(prints) > len(messages):
                    prints.pop()
                joinable = False
            pending.append(item)
    if pending:
        add(assistant_message(pending))
    return messages if fingerprinted else [*messages]


def _scan(items: Sequence[Any]) -> list[int]:
    """For each item, the fingerprint of a plain `{"role": ..., "content": "..."}` of a
    known role with some text (which every check passes and which is a chat message), as
    prefix_cache.fingerprint makes it; _OTHER for any other item, and for a plain one whose
    text is too long to hash here (LONG_TEXT_CHARS)."""
    return [hash((role, text, None, None, None))
            if type(item) is dict and len(item) == 2
            and type(text := item.get("content")) is str and text
            and (role := item.get("role")) in _PLAIN_ROLES and len(text) <= LONG_TEXT_CHARS
            else _OTHER
            for item in items]


def _said(item: Any) -> bool:
    """Whether `item` is a message item of the model's as an answer holds it (one
    `output_text` part), which every check passes: what a client resends most after
    plain messages."""
    if type(item) is not dict or item.get("type") != "message" or item.get(
        "role"
    ) != "assistant":
        return False
    content = item.get("content")
    if type(content) is not list or len(content) != 1:
        return False
    part = content[0]
    return (type(part) is dict and part.get("type") == "output_text"
            and type(part.get("text")) is str)
