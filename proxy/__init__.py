"""vm-proxy: virtual memory for LLM context windows, behind an OpenAI-compatible API.

    from proxy import create_app, load_settings

    app = create_app(load_settings("vm-proxy.toml"))  # an ASGI app, for any ASGI server

The command line is `vm-proxy` (proxy.cli). The layers, each a package: http (the ASGI
edge) -> loop (the fault loop) -> vm (the pure core), store (pages), upstream (the API
behind the proxy); see README.md, "Architecture".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.config import Settings, load_settings
    from proxy.http.app import create_app

__version__ = "0.1.0"
__all__ = ["Settings", "__version__", "create_app", "load_settings"]

# Loaded on first use: importing the VM core or the token counter alone (as the benchmarks
# do) should not load the web app, its HTTP clients and pydantic.
_LAZY = {
    "Settings": "proxy.config",
    "create_app": "proxy.http.app",
    "load_settings": "proxy.config",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'proxy' has no attribute {name!r}")
