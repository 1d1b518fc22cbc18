"""The upstream API as the proxy speaks to it. No VM logic: nothing here imports the fault
loop, the VM core or the store (tests/test_layers.py checks).

- client:     Upstream (open, post_json, stream) and the one kind of reply, Reply
- transport:  the pooled aiohttp session and its responses (AiohttpReply)
- headers:    which headers go upstream and which come back
- relay:      the faithful pass-through (every other /v1/* route, and the loop's relayed
              requests)
- disconnect: a wait on the upstream raced against the client leaving
- sse:        the SSE wire format
- assemble, completion: reading a reply, streamed or whole, into one message whatever the
              dialect; writing the client's chat.completion body
- usage:      token usage, read and summed
- responses_format: the Responses API's items, tools and usage in the chat representation
              the core takes, and back
- responses:  a Responses reply, whole or streamed, read into one message (ItemsMessage)
"""
