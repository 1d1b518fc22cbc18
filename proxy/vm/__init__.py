"""The virtual-memory core: pure functions over pages (no network, no database, no asyncio,
no settings: what it is held to comes as plain dataclasses, e.g. packer.PackOptions). It
owns its types (Page, Mutation); the store depends on them, never the reverse. It imports
only proxy.tokens (tests/test_layers.py checks).

Public API, by module (the fault loop, proxy.loop, is built on these):
- identity:    tenant_id, chain_hashes, chain_root
- ingest:      Counters, ingest_messages -> IngestResult(pages, mutations, segment_jobs)
- segments:    SegmentJob, build_summary, record_summary, summary_frontier
- compress:    reduce_text (level 1), abstract_text (level 2), make_hint
- claims:      extract_claims, claim_key
- summary_prompt: build_prompt, parse_answer -> ModelSummary (what a summarizing model
               is asked, and the checking of its answer; vm.summarizer)
- summary_pages: revised_summary, revised_abstract, claim_pages, reserve_claims,
               SummaryBudget (its answer as pages; the daily cap)
- page_table:  PageTable (access stats, L1 set; to_dict/from_dict)
- prefetch:    plan_prefetch -> PrefetchPlan, gather_candidates, pinned_start, search_query
- working_set: ScoredPage, Chooser(...).choose(budget) -> Selection
- pinning:     plan_pinned, fit_pinned (the verbatim recent turns, degraded to fit)
- packer:      pack_request(options: PackOptions) -> PackedRequest
- window_layout: reuse, compact (the turn's window, the frame's or restarted, and its block)
- frame:       Frame (the frozen context kept between turns), frame_key, block_position
- turn_block:  build_block (this turn's block of pages found for the question)
- faults:      FaultState, handle_page_fault, ids_to_load, parse_search_arguments,
               render_search_results, ToolArgumentError
- search_rank: refine_hits -> RankedHit (search results ranked for the model)
- tools:       vm_tool_names, vm_tool_schemas
- manifest, context, escape, prompts: the developer message's parts
- costs:       annotate_costs (per-page header/manifest-entry token counts, set at ingest)
- mutations:   Mutation (one page event), event names, in_context_at, Clock
Shared: pages (Page, PageKind, Modality, ids), bm25 (BM25Index, search_tokens).
"""
