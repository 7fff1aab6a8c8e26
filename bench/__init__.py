"""Benchmarks: pytest-benchmark micro-benchmarks and the fan-out / density harness (``bench.fanout``)."""
