"""Reading the memory for people: the admin API's answers (proxy.http.admin serves them,
`vm-proxy inspect` prints them), as JSON-ready dicts over any PageStore.

- reads:  tenants, conversations, one conversation's pages, a page at each level, a search
          as the model would run it, the fork tree, the timeline of turns
- replay: one turn's prompt rebuilt from its record and the stored pages, checked against
          the digest of what was sent

Every tenant's conversations are visible here: the caller decides who may ask (the HTTP
layer asks for `admin.api_key`). Tenants appear as the hashes the proxy keys them by; no
credential is stored anywhere to show.
"""
