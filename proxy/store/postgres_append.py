"""The one statement that appends pages to a PostgreSQL conversation, and its arguments.

Everything an append writes (pages, their index terms, chain hashes, the mutation log, the
Responses API id it answers and the conversation row's version) goes in a single
statement, so a stale writer changes nothing and a committed append is whole.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from proxy.store.codec import (
    LEAN_PREFIX,
    encode_page,
    encode_state,
    id_prefix,
    page_search_tokens,
)
from proxy.store.paths import term_prefix
from proxy.vm.lean import is_lean
from proxy.vm.mutations import Mutation
from proxy.vm.pages import Page

CONV_COLUMNS = "parent_id, fork_at, length, version, state, updated_at"

# `cur` locks the conversation row and must run before anything else: every other part
# reads it, the final UPDATE included (a CTE nobody reads would run after the UPDATE, and
# then find the row already changed by this very statement). An append that need not be
# durable when it returns (PageStore.append's `durable`; $27 false) also sets its own
# transaction's `synchronous_commit` off, so that its commit does not wait for the WAL to
# reach the disk: it is still committed, and seen by every other connection, before the
# statement returns; a crash of the database (not of the proxy) may lose the last such
# commits, whose messages the client sends again. A durable one keeps what the database
# or its role sets (`remote_apply` with a synchronous standby, say).
APPEND_SQL = f"""
WITH cur AS (
    SELECT version,
           CASE WHEN NOT $27::bool THEN set_config('synchronous_commit', 'off', true) END
    FROM conversations WHERE tenant = $1 AND conv_id = $2 FOR UPDATE
), input AS (
    SELECT * FROM unnest($4::text[], $5::text[], $6::int[], $7::bool[], $8::text[],
                         $9::text[], $10::text[], $11::bytea[], $12::float8[], $13::text[],
                         $14::text[], $15::int[], $25::bool[])
         AS u (page_id, prefix, anchor, is_message, kind, modality, chain_hash, body,
               created_at, terms, tfs, doc_len, lean)
), ins AS (
    INSERT INTO pages (tenant, conv_id, page_id, prefix, anchor, is_message, kind, modality,
                       chain_hash, body, created_at, doc_len)
    SELECT $1, $2, page_id, prefix, anchor, is_message, kind, modality, chain_hash, body,
           created_at, doc_len
    FROM input
    WHERE (SELECT version FROM cur) = $3
    ON CONFLICT (tenant, conv_id, page_id) DO UPDATE
        SET body = excluded.body, kind = excluded.kind, modality = excluded.modality,
            doc_len = excluded.doc_len
        -- Only a lean page is replaced, by the page derived from it (proxy.vm.lean).
        WHERE substring(pages.body from 1 for {len(LEAN_PREFIX)}) = '\\x{LEAN_PREFIX.hex()}'::bytea
          AND substring(excluded.body from 1 for {len(LEAN_PREFIX)})
              <> '\\x{LEAN_PREFIX.hex()}'::bytea
    RETURNING id, page_id, chain_hash, anchor, modality, doc_len
), indexed AS (
    INSERT INTO page_terms (term, page, tenant, conv_id, anchor, modality, tf, doc_len)
    SELECT t.term, i.id, $1, $2, i.anchor, i.modality, t.tf, i.doc_len
    FROM ins i JOIN input u ON u.page_id = i.page_id
    CROSS JOIN LATERAL unnest(string_to_array(u.terms, ' '), string_to_array(u.tfs, ' ')::int[])
         AS t (term, tf)
), hashed AS (
    INSERT INTO hashes (tenant, chain_hash, conv_id, position)
    SELECT $1, chain_hash, $2, anchor FROM ins WHERE chain_hash <> ''
    ON CONFLICT DO NOTHING
), logged AS (
    INSERT INTO mutations (tenant, conv_id, turn, event, page_id, level, detail, at)
    SELECT $1, $2, m.turn, m.event, m.page_id, m.level, m.detail, m.at
    FROM unnest($16::int[], $17::text[], $18::text[], $19::int[], $20::text[], $21::float8[])
         WITH ORDINALITY AS m (turn, event, page_id, level, detail, at, ord)
    WHERE (SELECT version FROM cur) = $3
    ORDER BY m.ord
), responded AS (
    INSERT INTO responses (tenant, response_id, conv_id, length)
    SELECT $1, $26::text, $2, $22 WHERE $26::text IS NOT NULL AND (SELECT version FROM cur) = $3
    ON CONFLICT (tenant, response_id) DO UPDATE
        SET conv_id = excluded.conv_id, length = excluded.length
)
UPDATE conversations c
SET version = c.version + 1, length = coalesce($22, c.length), state = coalesce($23, c.state),
    updated_at = $24,
    doc_count = c.doc_count + (SELECT count(*) FROM ins i JOIN input u USING (page_id)
                               WHERE NOT u.lean),
    doc_len = c.doc_len + (SELECT coalesce(sum(doc_len), 0) FROM ins)
WHERE c.tenant = $1 AND c.conv_id = $2 AND c.version = $3 AND (SELECT version FROM cur) = $3
RETURNING {CONV_COLUMNS}
"""


def append_args(
    tenant: str,
    conv_id: str,
    pages: Sequence[Page],
    expected_version: int,
    mutations: Sequence[Mutation],
    new_length: int,
    state: Mapping[str, Any] | None,
    now: float,
    response_id: str | None = None,
    durable: bool = True,
) -> list[Any]:
    """APPEND_SQL's arguments, $1 to $27, in order."""
    return [
        tenant, conv_id, expected_version, *page_columns(tenant, conv_id, pages),
        *mutation_columns(mutations, now),
        new_length, encode_state(state) if state is not None else None, now,
        [is_lean(page) for page in pages], response_id, durable,
    ]


def page_columns(tenant: str, conv_id: str, pages: Sequence[Page]) -> list[list[Any]]:
    """The pages as the twelve arrays of APPEND_SQL's and PUT_SQL's `input`."""
    prefix = term_prefix(tenant, conv_id)
    columns: list[list[Any]] = [[] for _ in range(12)]
    for page in pages:
        # A lean page is not indexed: its derived page replaces it and is, then.
        counts = Counter() if is_lean(page) else Counter(page_search_tokens(page))
        values = (
            page.page_id, id_prefix(page.page_id), page.anchor, page.is_message,
            page.kind.value, page.modality.value, page.chain_hash, encode_page(page),
            page.created_at, " ".join(prefix + term for term in counts),
            " ".join(map(str, counts.values())), sum(counts.values()),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


# PageStore.put_pages: a stored page's body replaced (its terms are the same), a new page
# added and indexed, the conversation's search statistics counted; its version, length
# and state left alone.
PUT_SQL = """
WITH conv AS (
    SELECT 1 FROM conversations WHERE tenant = $1 AND conv_id = $2
), input AS (
    SELECT * FROM unnest($3::text[], $4::text[], $5::int[], $6::bool[], $7::text[],
                         $8::text[], $9::text[], $10::bytea[], $11::float8[], $12::text[],
                         $13::text[], $14::int[])
         AS u (page_id, prefix, anchor, is_message, kind, modality, chain_hash, body,
               created_at, terms, tfs, doc_len)
), ins AS (
    INSERT INTO pages (tenant, conv_id, page_id, prefix, anchor, is_message, kind, modality,
                       chain_hash, body, created_at, doc_len)
    SELECT $1, $2, page_id, prefix, anchor, is_message, kind, modality, chain_hash, body,
           created_at, doc_len
    FROM input WHERE EXISTS (SELECT 1 FROM conv)
    ON CONFLICT (tenant, conv_id, page_id) DO UPDATE SET body = excluded.body
    RETURNING id, page_id, anchor, modality, doc_len, (xmax = 0) AS added
), indexed AS (
    INSERT INTO page_terms (term, page, tenant, conv_id, anchor, modality, tf, doc_len)
    SELECT t.term, i.id, $1, $2, i.anchor, i.modality, t.tf, i.doc_len
    FROM ins i JOIN input u ON u.page_id = i.page_id
    CROSS JOIN LATERAL unnest(string_to_array(u.terms, ' '), string_to_array(u.tfs, ' ')::int[])
         AS t (term, tf)
    WHERE i.added
), counted AS (
    UPDATE conversations c
    SET doc_count = c.doc_count + (SELECT count(*) FROM ins WHERE added),
        doc_len = c.doc_len + (SELECT coalesce(sum(doc_len), 0) FROM ins WHERE added)
    WHERE c.tenant = $1 AND c.conv_id = $2 AND EXISTS (SELECT 1 FROM ins WHERE added)
)
SELECT count(*) FROM ins
"""


def mutation_columns(mutations: Sequence[Mutation], now: float) -> list[list[Any]]:
    return [
        [m.turn for m in mutations],
        [m.event for m in mutations],
        [m.page_id for m in mutations],
        [m.level for m in mutations],
        [m.detail for m in mutations],
        [m.at or now for m in mutations],
    ]
