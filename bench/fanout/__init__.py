"""Fan-out / density harness: livechat fanout vs a picows and a websockets broadcast server.

``python -m bench.fanout --help``; methodology in ``bench/README.md``.
"""
