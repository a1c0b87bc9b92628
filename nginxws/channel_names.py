"""The channel-name rule, shared by the configuration and the running server.

A channel name is 1 to 128 characters, each an ASCII letter, a digit, or
one of ``_ - . : @``: safe in a URL query, a log line and a Redis key.
"""

from __future__ import annotations

import re

MAX_CHANNEL_NAME = 128
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,%d}" % MAX_CHANNEL_NAME)


def valid_channel(name: str) -> bool:
    """Whether ``name`` follows the channel-name rule."""
    return CHANNEL_NAME.fullmatch(name) is not None
