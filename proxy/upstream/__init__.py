"""The upstream API as the proxy speaks to it: sending requests (`client`, over the aiohttp
`transport`), the SSE wire format (`sse`), reading replies into one message whatever the
dialect (`assemble`, `completion`) and their token usage (`usage`). No VM logic: nothing
here imports the fault loop, the VM core or the store."""
