"""The fault loop: the one place where the VM core, the store and the upstream meet.

- handler:        a validated chat completion: relayed, or answered with memory; fail-open
- policy:         the request's mode, tenant and session
- prepare:        store the new messages, decide whether memory is needed, pack the body
- services:       what the loop reads of the app (AppServices)
- conversations:  where a request's messages sit in the conversation tree; storing them
- placement:      what placing a request yields (Placement) and the types it is given
- prefix_cache:   the conversation rows and prefixes this process saw last
- storing:        new messages made pages (the core's ingest, summaries over stored pages)
- early_search:   the turn's search, started with the append of its question
- turn:           one VM-active request, and the loop control both loops share
- nonstream:      the loop for `stream: false`
- stream:         the loop for `stream: true`: several upstream streams, one client stream
- splitter:       one upstream stream split into what the client sees and what the loop keeps
- citations:      strict mode's `[ref: ...]` citations, stripped and recorded
- resolver:       the model's VM calls answered against the store
- observe:        a relayed answer stored once complete
- responses_handler: a validated Responses API request: relayed, or answered with memory
- responses_input:  a Responses request's input as chat messages, checked and fingerprinted
                  in one pass
- responses_adapter: a Responses request as a chat body for the core; the upstream bodies
                  (native Responses, or chat) made from the packed prompt
- responses_turn:  one Responses memory turn on the shared loop, its answer and response id
- responses_stream: the Responses event stream of a memory turn (stream.StreamDialect)
- responses_output: the one Response the client gets over the loop's calls
"""
