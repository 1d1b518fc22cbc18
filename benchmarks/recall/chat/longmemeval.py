"""The LongMemEval sample (`../shared/data/longmemeval-sample/`, three real user-assistant
haystacks of about 400 turns, nine questions each) as chats for the harness. Read from
where it lies, never copied; `load()` says why when it is absent.

Each haystack is one conversation: a short system message, then every session's turns in
order, the session's date stated once at the start of its first message
(`[Session date: 2023/05/07 (Sun) 06:52] ...`), as the dialogue dataset does.

Judging "evidence visible" with session-level labels. The data labels, per question, the
sessions holding its evidence (`answer_session_ids`), and for each instance's first
question also the turns (`has_answer`). A whole session (often 10k+ characters) is not what
a model needs to see, and one of its sentences is; so the evidence is sentences:

1. A question with labelled turns: each labelled turn must be visible through its key
   sentence, the sentence (or tied sentences) sharing the most content words with the
   question and answer together; a turn with no such sentence must be visible whole
   ("I'm 32, so I'm in my 30s." shares no word with "How many years will I be when my
   friend Rachel gets married?" but is the evidence).
2. Otherwise, per labelled session: its sentences (split at line breaks and sentence ends)
   scored by the share of the answer's distinct content words they hold; any sentence
   within 80% of the session's best counts (answers are restated across a session, and
   a list answer spreads over lines). A question is recalled when every labelled session
   has one of those visible.
3. A session whose best sentence holds under 30% of the answer's words does not contain
   the answer: the label is wrong for that question (one of the sample's added questions
   points to a session about another subject), and the question is left out with the
   reason, not relabelled.

Kinds: the first question's `question_type` (knowledge-update, multi-session); the added
questions are `single-session`. Keywords: the question's content words, one query.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from benchmarks.recall.chat.types import Chat, Evidence, Question
from proxy.vm.bm25 import search_tokens

DATA = (
    Path(__file__).resolve().parents[3].parent
    / "shared" / "data" / "longmemeval-sample" / "longmemeval_s_sample.json"
)  # fmt: skip
SYSTEM = "A conversation between a user and an AI assistant."
NEAR_BEST = 0.8
MIN_COVERAGE = 0.3
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how many much does did do is was were are "
    "can could would should the a an of in on for to and or my i me".split()
)


def available() -> str | None:
    """None when the data is there, else why the dataset is skipped."""
    if not DATA.is_file():
        return f"LongMemEval sample not found at {DATA} (it lives in ../shared/data)"
    return None


def load(path: Path = DATA) -> list[Chat]:
    instances = json.loads(path.read_text(encoding="utf-8"))
    return [_chat(instance) for instance in instances]


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def keywords(question: str) -> str:
    """The question's words less question and function words, as a model would search."""
    words = [w for w in re.findall(r"\w+", question) if len(w) > 1
             and w.lower() not in _QUESTION_WORDS]  # fmt: skip
    return " ".join(dict.fromkeys(words))


def _chat(instance: dict[str, Any]) -> Chat:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    where: dict[str, list[int]] = {}  # session id -> positions of its turns
    for sid, date, turns in zip(instance["haystack_session_ids"], instance["haystack_dates"],
                                instance["haystack_sessions"], strict=True):  # fmt: skip
        where[sid] = []
        for number, turn in enumerate(turns):
            content = str(turn["content"])
            if number == 0:
                content = f"[Session date: {date}] {content}"
            where[sid].append(len(messages))
            messages.append({"role": turn["role"], "content": content})
    sessions = dict(zip(instance["haystack_session_ids"], instance["haystack_sessions"],
                        strict=True))  # fmt: skip
    chat = Chat("longmemeval", f"longmemeval-{instance['question_id']}", messages, [])
    for index, (question, answer, labels) in enumerate(zip(
        instance["questions"], instance["answers"], instance["answer_session_ids"], strict=True
    )):  # fmt: skip
        kind = str(instance["question_type"]) if index == 0 else "single-session"
        evidence, problem = _evidence(question, str(answer), labels, sessions, where,
                                      messages)  # fmt: skip
        if problem:
            chat.excluded.append(f"{question} ({problem})")
            continue
        chat.questions.append(
            Question(kind, question, str(answer), (keywords(question),), tuple(evidence))
        )
    return chat


def _evidence(question: str, answer: str, labels: list[str],
              sessions: dict[str, list[dict[str, Any]]], where: dict[str, list[int]],
              messages: list[dict[str, Any]]) -> tuple[list[Evidence], str]:  # fmt: skip
    turns = [(where[s][n], t) for s in labels for n, t in enumerate(sessions[s])
             if t.get("has_answer")]  # fmt: skip
    if turns:
        asked = set(search_tokens(question)) | set(search_tokens(answer))
        return [_key_sentences(messages[p]["content"], p, asked) for p, _ in turns], ""
    wanted = set(search_tokens(answer))
    found = []
    for sid in labels:
        units = [(p, s) for p in where[sid] for s in sentences(messages[p]["content"])]
        scored = [(len(wanted & set(search_tokens(s))) / max(1, len(wanted)), p, s)
                  for p, s in units]  # fmt: skip
        best = max((c for c, _, _ in scored), default=0.0)
        if best < MIN_COVERAGE:
            return [], f"its labelled session {sid} holds at most {best:.0%} of the answer's words"
        chosen = [(p, s) for c, p, s in scored if c >= NEAR_BEST * best]
        found.append(Evidence(chosen[0][0], tuple(dict.fromkeys(s for _, s in chosen))))
    return found, ""


def _key_sentences(content: str, position: int, asked: set[str]) -> Evidence:
    units = sentences(content)
    overlap = [len(asked & set(search_tokens(u))) for u in units]
    best = max(overlap, default=0)
    if best == 0:
        return Evidence(position, (content,))
    return Evidence(position, tuple(u for u, n in zip(units, overlap, strict=True) if n == best))
