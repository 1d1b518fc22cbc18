from __future__ import annotations

from proxy.tokens import counter_for_model
from proxy.vm.ingest import Counters, ingest_messages
from proxy.vm.pages import Modality, Page, PageKind
from proxy.vm.segments import (
    ROLLUP_FANOUT,
    SegmentJob,
    build_summary,
    record_summary,
    summary_frontier,
)
from tests.vm.conversations import long_conversation

COUNTER = counter_for_model("gpt-4o")


def _pages(messages: list[dict[str, object]]) -> tuple[dict[str, Page], Counters, list[SegmentJob]]:
    counters = Counters()
    result = ingest_messages(
        messages,
        first_position=0,
        counters=counters,
        counter=COUNTER,
        segment_turns=6,
        clock=lambda: 0.0,
    )
    return {p.page_id: p for p in result.pages}, counters, result.segment_jobs


def test_summary_covers_its_messages_with_real_levels() -> None:
    pages, counters, jobs = _pages(long_conversation(13))
    job = jobs[0]
    summary = build_summary(
        job, [pages[i] for i in job.page_ids()], counter=COUNTER, clock=lambda: 5.0
    )
    assert summary.page_id == "seg_0" and summary.kind is PageKind.SUMMARY
    assert summary.covers == tuple(f"msg_{i}" for i in range(job.lo, job.hi))
    assert summary.anchor == job.hi - 1 and summary.created_at == 5.0
    assert summary.tokens[0] > summary.tokens[1] > summary.tokens[2] > summary.tokens[3]
    assert summary.tokens[2] <= 80
    assert "turns 1-6" in summary.hint and summary.renderings[3].startswith("seg_0: ")
    assert "msg_3 user:" in summary.text
    assert summary.tokens == tuple(COUNTER.text(r) for r in summary.renderings)


def test_missing_pages_are_skipped() -> None:
    pages, _, jobs = _pages(long_conversation(13))
    wanted = jobs[0].page_ids()[::2]
    summary = build_summary(jobs[0], [pages[i] for i in wanted], counter=COUNTER)
    assert summary.covers == tuple(wanted)


def test_rollups_keep_the_frontier_bounded() -> None:
    counters = Counters()
    made: list[Page] = []

    def summary(job: SegmentJob, depth_pages: list[Page]) -> Page:
        page = build_summary(job, depth_pages, counter=COUNTER, clock=lambda: 0.0)
        made.append(page)
        return page

    messages = [
        Page(
            "msg_0",
            PageKind.TRANSCRIPT,
            Modality.TEXT,
            0,
            1,
            "user",
            ("a", "a", "a", "a"),
            (1, 1, 1, 1),
            "a",
        )
    ]
    total_segments = ROLLUP_FANOUT**3 + 5
    for n in range(total_segments):
        job = SegmentJob(f"seg_{counters.segments}", n, n + 1)
        counters.segments += 1
        jobs = record_summary(counters, summary(job, messages))
        while jobs:
            rollup = jobs.pop()
            covered = [p for p in made if p.page_id in rollup.covers]
            page = summary(rollup, covered)
            assert page.kind is PageKind.INDEX and page.covers == rollup.covers
            jobs.extend(record_summary(counters, page))
    frontier = summary_frontier(counters)
    assert len(frontier) <= ROLLUP_FANOUT * len(counters.rollups)
    assert len(frontier) == 1 + 5  # one depth-3 roll-up, then the five newest segments
    ids = {p.page_id: p for p in made}
    assert ids[frontier[0]].extra["depth"] == 3
    assert len(set(ids)) == len(made)


def test_a_summary_names_what_its_stretch_names_not_its_frequent_words() -> None:
    counter = counter_for_model("gpt-4o")
    messages = [{"role": "system", "content": "Two friends."}]
    for maya, jon in [
        ("[Session date: 8 May 2023] Hi Jon! We finally saw Big Thief in Seville.",
         "Nice, Maya! How was the drive?"),
        ("Long. The van needed 140 litres of diesel.", "Ha, classic. Any plans?"),
        ("We decided to move to Ghent in June.", "Big news!"),
        ("Honestly it was a long week, honestly.", "Same, honestly."),
    ]:
        messages += [{"role": "user", "name": "Maya", "content": maya},
                     {"role": "assistant", "name": "Jon", "content": jon}]
    result = ingest_messages(messages, first_position=0, counters=Counters(), counter=counter,
                             segment_turns=4, clock=lambda: 0.0)
    pages = {p.page_id: p for p in result.pages}
    job = SegmentJob("seg_0", 0, len(messages))
    seg = build_summary(job, [pages[i] for i in job.page_ids() if i in pages], counter=counter)
    abstract = seg.rendering(2)
    assert abstract.startswith("Summary of turns 1-4, 8 May 2023. Mentions: ")
    mentioned = abstract.partition("Mentions: ")[2].partition(".")[0].split(", ")
    assert mentioned == ["Big Thief", "Seville", "140 litres", "Ghent", "June"]
    assert "honestly" not in abstract.lower()
    assert not {"Maya", "Jon", "Hi Jon"} & set(mentioned)  # the speakers are no news
    assert abstract.endswith("We decided to move to Ghent in June.")
    assert "Maya: " in seg.rendering(0) and "Jon: " in seg.rendering(0)
