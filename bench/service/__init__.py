"""End-to-end benchmarks of `livechat serve`: accepted comments/s of one edge (embedded) and
publish -> delivery latency across two edges on Redis (``python -m bench.service``)."""
