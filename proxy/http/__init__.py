"""The HTTP edge: the ASGI app (`app`), its routes (`routes`), reading and validating a
request (`body`, `validation`, `responses_validation`) and the access log and request
metrics (`access`). A chat completion or a Responses API request leaves here for the fault
loop (proxy.loop); every other `/v1/*` route is relayed as it is (proxy.upstream.relay)."""
