"""The fault loop: the one place where the VM core, the store and the upstream meet.

A validated chat completion comes in through `handler.handle_chat`; `prepare` stores its new
messages (`conversations`, `storing`) and packs the upstream body into a `turn.Turn`; the
loop (`nonstream` or `stream`) calls the upstream, answers the model's VM calls
(`resolver`) and gives the client one answer.
"""
