"""livechat: the connection tier for live-stream comments.

The wire (HTTP upgrade, RFC 6455 frames, permessage-deflate, send queues, fan-out) lives in the
compiled core, ``livechat._edge``; this package configures it and orchestrates what happens per
comment.
"""

__version__ = "0.1.0"
