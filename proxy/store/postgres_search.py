"""BM25 in one PostgreSQL statement, scoped to a conversation path.

PostgreSQL's own ts_rank has no inverse document frequency, so a word on every page would
weigh as much as a rare name. Instead the GIN index on `pages.terms` finds the candidates
(pages of the path's conversations holding any query term; the `@scope` tokens make it
intersect postings rather than filter a whole tenant), and the statement scores them with
the same formula as proxy.vm.bm25: document frequencies come from the candidates
themselves (every page holding a query term is a candidate), N and the average length
from per-conversation totals kept by `append`. So IDF is computed over the path's own
conversations: no other tenant's words shift a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.store.base import Path
from proxy.store.paths import scope_token, span_bounds
from proxy.vm.bm25 import K1, B
from proxy.vm.pages import Modality

SEARCH_SQL = f"""
WITH spans AS (
    SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[]) AS s (conv_id, lo, hi)
), stats AS (
    SELECT greatest(sum(doc_count), 1)::float8 AS n,
           greatest(sum(doc_len)::float8 / greatest(sum(doc_count), 1), 1.0) AS avgdl
    FROM conversations WHERE tenant = $1 AND conv_id = ANY ($2::text[])
), cand AS (
    SELECT p.id, p.terms, p.tfs, p.doc_len, p.modality
    FROM pages p JOIN spans s
      ON p.conv_id = s.conv_id AND p.anchor >= s.lo AND p.anchor < s.hi
    WHERE p.tenant = $1 AND p.terms && $5::text[] AND p.terms && $6::text[]
), hits AS (
    SELECT c.id, c.doc_len, c.modality, q.term,
           c.tfs[array_position(c.terms, q.term)]::float8 AS tf
    FROM cand c CROSS JOIN unnest($6::text[]) AS q (term)
    WHERE q.term = ANY (c.terms)
), df AS (
    SELECT term, count(*)::float8 AS n FROM hits GROUP BY term
), ranked AS (
    SELECT h.id,
           sum(ln(1 + (st.n - df.n + 0.5) / (df.n + 0.5)) * h.tf * {K1 + 1}
               / (h.tf + {K1} * ({1 - B} + {B} * h.doc_len / st.avgdl))) AS score
    FROM hits h JOIN df USING (term) CROSS JOIN stats st
    WHERE $7::text IS NULL OR h.modality = $7::text
    GROUP BY h.id
    ORDER BY score DESC, h.id
    LIMIT $8
)
SELECT p.body, r.score FROM ranked r JOIN pages p ON p.id = r.id ORDER BY r.score DESC, r.id
"""


def search_args(
    path: Path, terms: Sequence[str], limit: int, modality: Modality | None
) -> list[Any]:
    bounds = span_bounds(path)
    return [
        path.tenant,
        [conv_id for conv_id, _, _ in bounds],
        [lo for _, lo, _ in bounds],
        [hi for _, _, hi in bounds],
        [scope_token(path.tenant, conv_id) for conv_id, _, _ in bounds],
        list(terms),
        modality.value if modality is not None else None,
        limit,
    ]
