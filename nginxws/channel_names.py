"""What a channel may be called: the one rule the configuration and the runtime share.

A channel name is 1 to 128 characters, each an ASCII letter, a digit, or one
of ``_ - . : @``.  The configuration refuses names written in it that break
the rule (``nginxws.conf.handlers``); the runtime checks the names a request
gives (``$arg_room``) with the same functions.  This module imports nothing
of nginxws.
"""

from __future__ import annotations

import re

MAX_CHANNEL_NAME_LENGTH = 128
_CHARACTERS = r"A-Za-z0-9_\-.:@"

CHANNEL_NAME = re.compile(f"[{_CHARACTERS}]{{1,{MAX_CHANNEL_NAME_LENGTH}}}")
"""A whole channel name (use ``fullmatch``)."""

_CHANNEL_TEXT = re.compile(f"[{_CHARACTERS}]{{0,{MAX_CHANNEL_NAME_LENGTH}}}")


def valid_channel(name: str) -> bool:
    """Whether ``name`` is a channel name."""
    return CHANNEL_NAME.fullmatch(name) is not None


def valid_channel_part(text: str) -> bool:
    """Whether ``text`` may be part of a channel name: channel characters
    only, at most 128 of them, possibly none.  A value whose written text
    fails this can never give a valid name, whatever its variables hold."""
    return _CHANNEL_TEXT.fullmatch(text) is not None
