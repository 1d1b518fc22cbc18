"""The HTTP edge: the ASGI app (`app`), its routes (`routes`), reading and validating a
request (`body`, `validation`) and the access log and request metrics (`access`). A chat
completion leaves here for the fault loop (proxy.loop); every other `/v1/*` route is
relayed as it is (proxy.upstream.relay)."""
