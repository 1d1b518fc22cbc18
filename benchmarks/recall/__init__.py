"""Long-conversation recall benchmark: generated conversations, a scripted upstream model,
the proxy against truncation and BM25 baselines. Run `python -m benchmarks.recall --help`."""
