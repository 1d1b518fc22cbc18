from __future__ import annotations

from proxy.vm import excerpt as excerpt_module
from proxy.vm.bm25 import search_tokens
from proxy.vm.excerpt import ELLIPSIS, excerpt

ARTICLE = (
    "As an AI language model, I can describe the fact-checking process of a news story. "
    "1. Gathering information: the first step is to gather what the story needs. "
    "2. Verifying sources: the next step checks the credentials of each source. "
    "3. Cross-checking information: facts are compared across sources of the story. "
    "4. Reviewing context: the story is read against related events. "
    "5. Final review: The final step involves reviewing the story once more for errors. "
    "At a large agency, teams of editors and fact-checkers work on every story together."
)


def terms(question: str) -> list[str]:
    return search_tokens(question)


def test_short_texts_come_whole() -> None:
    assert excerpt("Big Thief, front row!", terms("which band"), 20) == "Big Thief, front row!"


def test_the_passage_that_answers_not_the_one_that_shares_the_most_words() -> None:
    # Every sentence is about the story; "final" and "step" say which one answers.
    cut = excerpt(ARTICLE, terms("What is the final step in the fact-checking of a story?"), 30)
    assert "The final step involves reviewing the story once more" in cut
    assert len(cut.split()) <= 34 and ELLIPSIS in cut


def test_several_matching_passages_in_order_with_gaps_marked() -> None:
    cut = excerpt(ARTICLE, terms("verifying sources and the final review"), 40)
    assert cut.index("Verifying sources") < cut.index("Final review")
    assert f"{ELLIPSIS} 5. Final review" in cut or f"{ELLIPSIS} 4." in cut


def test_no_match_gives_the_opening_and_one_long_sentence_is_cut_around_the_match() -> None:
    assert excerpt(ARTICLE, terms("zebra"), 12).startswith("As an AI language model")
    long_sentence = " ".join(["word"] * 60 + ["Lisbon"] + ["word"] * 60)
    cut = excerpt(long_sentence, terms("Lisbon"), 20)
    assert "Lisbon" in cut and cut.startswith(ELLIPSIS) and cut.endswith(ELLIPSIS)


def test_a_text_is_parsed_once_whatever_the_query() -> None:
    text = " ".join(f"Sentence {i} is about topic{i} and nothing else." for i in range(40))
    excerpt_module._parsed.cache_clear()
    first = excerpt(text, ["topic3"], 20)
    again = excerpt(text, ["topic7", "topic9"], 30)
    assert excerpt_module._parsed.cache_info().misses == 1
    assert "topic3" in first and "topic7" in again and "topic9" in again
    excerpt_module._parsed.cache_clear()
    assert excerpt(text, ["topic7", "topic9"], 30) == again
