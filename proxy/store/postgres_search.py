"""BM25 in one PostgreSQL statement, scoped to a conversation path.

PostgreSQL's own ts_rank has no inverse document frequency, so a word on every page would
weigh as much as a rare name. Instead the statement reads the postings of the query terms
from `page_terms` (an index-only range scan per term: the terms carry their conversation's
prefix, so only the searched conversations' postings are read), keeps those visible on
the path, and scores them with the formula of proxy.vm.bm25: document frequencies come
from the visible postings themselves, N and the average length from per-conversation
totals kept by `append`. IDF is thus computed over the path's own conversations: no other
conversation's or tenant's words shift a score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.store.base import Path
from proxy.store.paths import span_bounds, term_prefix
from proxy.vm.bm25 import K1, B
from proxy.vm.pages import Modality

SEARCH_SQL = f"""
WITH stats AS MATERIALIZED (
    SELECT greatest(sum(doc_count), 1)::float8 AS n,
           greatest(sum(doc_len)::float8 / greatest(sum(doc_count), 1), 1.0) AS avgdl
    FROM conversations WHERE tenant = $1 AND conv_id = ANY ($2::text[])
), hits AS (
    SELECT t.page AS id, t.doc_len, t.modality, u.term, t.tf::float8 AS tf
    FROM (SELECT DISTINCT * FROM unnest($5::text[], $6::text[])) AS u (prefixed, term)
    CROSS JOIN LATERAL (
        SELECT page, doc_len, modality, tf, conv_id, anchor FROM page_terms
        WHERE term = u.prefixed AND tenant = $1
        OFFSET 0
    ) AS t
    JOIN unnest($2::text[], $3::int[], $4::bigint[]) AS s (conv_id, lo, hi)
      ON t.conv_id = s.conv_id AND t.anchor >= s.lo AND t.anchor < s.hi
), df AS MATERIALIZED (
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
    prefixes = [term_prefix(path.tenant, conv_id) for conv_id, _, _ in bounds]
    return [
        path.tenant,
        [conv_id for conv_id, _, _ in bounds],
        [lo for _, lo, _ in bounds],
        [hi for _, _, hi in bounds],
        [prefix + term for prefix in prefixes for term in terms],
        [term for _ in prefixes for term in terms],
        modality.value if modality is not None else None,
        limit,
    ]
