"""vm-proxy: virtual memory for LLM context windows, behind an OpenAI-compatible API."""

__version__ = "0.1.0"
__all__ = ["__version__"]
