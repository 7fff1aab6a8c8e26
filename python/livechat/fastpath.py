"""The per-event loops the services use: compiled (``livechat._speedups``) when built, else the
plain-Python twins (``livechat._pure``). ``LIVECHAT_PURE=1`` in the environment forces the twins.

Build the compiled module with ``python pyext/setup.py``.
"""

from __future__ import annotations

import os

COMPILED: bool
if os.environ.get("LIVECHAT_PURE") == "1":
    from livechat._pure import BlockScanner, TokenTable, keep_sample, sample_mask, skeleton

    COMPILED = False
else:
    try:
        from livechat._speedups import (  # type: ignore[assignment]
            BlockScanner,
            TokenTable,
            keep_sample,
            sample_mask,
            skeleton,
        )

        COMPILED = True
    except ImportError:
        from livechat._pure import BlockScanner, TokenTable, keep_sample, sample_mask, skeleton

        COMPILED = False

__all__ = ["COMPILED", "BlockScanner", "TokenTable", "keep_sample", "sample_mask", "skeleton"]
