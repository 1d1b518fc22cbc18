"""Benchmarks of vm-proxy: runnable scripts and packages, never timed tests."""
