"""Strip strict mode's `[ref: msg_12]` citations from what the client sees, and record them;
strip the page labels of the context (`[msg_12]`, `[claim_17 claim]`) a model may copy.

Accepted citation forms: `[ref: msg_12]`, `[ref:msg_12]`, `[ref: msg_12, seg_3]` (also `;`
between ids, any case for `ref`). Labels: a page id in brackets, alone or with a role or
page kind after it (the context's own `[msg_12]`, and the `[msg_12 user]` of older
prompts). The labels are ours in every mode: a client never asked for them. One right
after a name or a closing bracket is code indexing something (`images[img_2]`) and stays.
Anything else in brackets is left alone.

Streaming: text arrives in arbitrary pieces, so `CitationStripper.feed` holds back a tail
that may still become a citation (`[`, `[re`, `[ref: msg_1` ...) and releases it as soon
as it cannot (or past `MAX_HOLD` characters). It also holds trailing spaces/tabs for one
piece: whether they survive depends on what follows (a citation right after them takes
them along). Text without citations comes out byte-identical, only re-chunked.

Whitespace left behind is tidied: the spaces around a removed citation collapse to one,
to none before punctuation or a line break, and to none at the start of a line.
"""

from __future__ import annotations

import re

__all__ = ["MAX_HOLD", "CitationStripper", "strip_citations"]

MAX_HOLD = 200

_ID = r"[A-Za-z]+_\d+"
_CITATION = re.compile(rf"\[ref:[ \t]*({_ID}(?:[ \t]*[,;][ \t]*{_ID})*)[ \t]*\]", re.IGNORECASE)
# The word older prompts put after a label's id: who said it, or what kind of page it is.
_LABEL_WORDS = "user|assistant|system|developer|tool|claim|summary|image"
_LABEL = re.compile(rf"\[(?:msg|seg|claim|img)_\d+(?:[ \t]+(?:{_LABEL_WORDS}))?\]")
_BOTH = re.compile(f"{_CITATION.pattern}|{_LABEL.pattern}", re.IGNORECASE)
_IDS = re.compile(_ID)
# A text that starts with "[" and could still grow into a citation or a label.
_PREFIX = re.compile(
    r"\[(?:r(?:e(?:f(?::[ \tA-Za-z0-9_,;]*)?)?)?)?"
    r"|\[(?:m(?:s(?:g(?:_\d*)?)?)?|s(?:e(?:g(?:_\d*)?)?)?|c(?:l(?:a(?:i(?:m(?:_\d*)?)?)?)?)?"
    r"|i(?:m(?:g(?:_\d*)?)?)?)"
    r"|\[(?:msg|seg|claim|img)_\d+[ \t]+[A-Za-z]*",  # (a word not yet whole)
    re.IGNORECASE,
)
_HSPACE = " \t"
# A label's shape right after these is code indexing something (`images[img_2]`,
# `f(x)[msg_1]`), not a label the model copied: left alone. (A citation glued to a word,
# `as agreed[ref: msg_3]`, is still one.)
_INDEXED = frozenset("_)]")
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}\n\r…")


class CitationStripper:
    """Incremental: `feed(piece) -> text to send now`, `flush() -> the rest` at the end."""

    __slots__ = (
        "_pending", "_held_ws", "_after", "_gap", "_line_start", "ids", "_seen", "_marks",
        "_last", "_removed_last",
    )

    def __init__(self, *, citations: bool = True) -> None:
        """`citations`: strip (and record) citations too; labels are stripped always."""
        self._marks = _BOTH if citations else _LABEL
        self._pending = ""  # a possible citation start, not yet released
        self._held_ws = ""  # trailing spaces of released text, not yet sent
        self._after = False  # a citation was just removed: the next text decides the gap
        self._gap = False  # there was whitespace around that citation
        self._line_start = True  # nothing sent yet, or the last text sent ended a line
        self.ids: list[str] = []  # cited page ids, first-seen order, no repeats
        self._seen: set[str] = set()
        self._last = ""  # the last character of the text released so far, as it came
        self._removed_last = False  # ... and whether a mark removed ended that text

    def feed(self, text: str) -> str:
        if not text:
            return ""
        if self._pending:
            text = self._pending + text
            self._pending = ""
        cut = text.rfind("[")
        if cut != -1 and len(text) - cut <= MAX_HOLD and _PREFIX.fullmatch(text, cut):
            self._pending = text[cut:]
            text = text[:cut]
        return self._release(text)

    def flush(self) -> str:
        """Release everything held; call at the end of each upstream response."""
        out = self._release(self._pending)
        self._pending = ""
        if not self._after:
            out += self._held_ws
        self._held_ws = ""
        self._after = self._gap = False
        return out

    def _indexing(self, text: str, at: int) -> bool:
        """Is the bracket at `text[at]` code indexing what comes right before it (an ASCII
        name, a call, an index)? Not after a mark just removed (`[msg_3][msg_5]`), nor
        after text of other scripts (CJK answers glue labels to their words)."""
        before = text[at - 1] if at else self._last
        return before.isascii() and (before.isalnum() or before in _INDEXED)

    def _release(self, text: str) -> str:
        if not text:
            return ""
        if "[" not in text:
            self._last = text[-1]
            self._removed_last = False
            return self._text(text)
        out: list[str] = []
        pos = 0
        removed = 0 if self._removed_last else -1  # where the last mark removed ended
        for match in self._marks.finditer(text):
            cited = match.group(1) if self._marks is _BOTH else None
            at = match.start()
            if cited is None and at != removed and self._indexing(text, at):
                continue  # a label's shape, but code (a citation is never code)
            out.append(self._text(text[pos:at]))
            self._cite(cited)
            pos = removed = match.end()
        self._last = text[-1]
        self._removed_last = removed == len(text)
        out.append(self._text(text[pos:]))
        return "".join(out)

    def _cite(self, ids: str | None) -> None:
        """A citation (its ids recorded) or, `ids` None, a label was removed."""
        for page_id in _IDS.findall(ids or ""):
            if page_id not in self._seen:
                self._seen.add(page_id)
                self.ids.append(page_id)
        if self._held_ws:
            self._gap = True
            self._held_ws = ""
        self._after = True

    def _text(self, text: str) -> str:
        if not text:
            return ""
        if self._after:
            stripped = text.lstrip(_HSPACE)
            if len(stripped) < len(text):
                self._gap = True
            if not stripped:
                return ""
            joint = " " if self._gap and not self._line_start else ""
            if stripped[0] in _NO_SPACE_BEFORE:
                joint = ""
            text = joint + stripped
            self._after = self._gap = False
        body = text.rstrip(_HSPACE)
        if not body:
            self._held_ws += text
            return ""
        out = self._held_ws + body
        self._held_ws = text[len(body) :]
        self._line_start = body[-1] in "\n\r"
        return out


def strip_citations(text: str, *, citations: bool = True) -> tuple[str, list[str]]:
    """Non-stream: the text without labels (and citations), and the cited ids in order."""
    stripper = CitationStripper(citations=citations)
    out = stripper.feed(text) + stripper.flush()
    return out, stripper.ids
