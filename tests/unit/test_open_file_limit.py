"""``edge.max_connections`` is capped below the open-file limit: past it accept() fails (EMFILE)
and connections are reset instead of answered 503, and the admin server cannot accept either."""

from __future__ import annotations

import dataclasses
import resource

from livechat.config import EdgeConfig, LiveChatConfig
from livechat.server.app import FD_RESERVE, within_open_file_limit


def test_the_default_is_capped_below_the_open_file_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    capped = within_open_file_limit(LiveChatConfig())
    assert soft != resource.RLIM_INFINITY
    assert capped.edge.max_connections == soft - FD_RESERVE
    assert dataclasses.replace(capped, edge=LiveChatConfig().edge) == LiveChatConfig()


def test_a_setting_below_the_limit_is_kept() -> None:
    config = LiveChatConfig(edge=EdgeConfig(max_connections=1_000))
    assert within_open_file_limit(config) is config
