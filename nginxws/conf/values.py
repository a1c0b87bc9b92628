"""nginx's argument value syntaxes: numbers, sizes, times, flags, regexes.

Each parser returns the value or ``None`` when the text is not valid, and
the directive handler words the error the way nginx does for that directive.
The rules copy nginx's ``ngx_atoi``, ``ngx_parse_size`` and
``ngx_parse_time`` so that a value nginx accepts means the same here.
"""

from __future__ import annotations

import re

NGX_MAX_INT = 2**63 - 1

# ngx_parse_time() steps: units must appear in this (descending) order.
_TIME_UNITS = {  # unit -> (step, milliseconds)
    "w": (3, 7 * 24 * 3600 * 1000),
    "d": (4, 24 * 3600 * 1000),
    "h": (5, 3600 * 1000),
    "m": (6, 60 * 1000),
    "s": (7, 1000),
    "ms": (8, 1),
    " ": (9, 1000),
}
_MONTH_STEP = 2  # "y" and "M" are not allowed in millisecond values
_SIZE_UNITS = {"k": 1024, "K": 1024, "m": 1024**2, "M": 1024**2, "g": 1024**3, "G": 1024**3}
_DIGITS = frozenset("0123456789")


def parse_int(text: str) -> int | None:
    """ngx_atoi: one or more ASCII digits, no sign, no overflow."""
    if not text or not _DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if value <= NGX_MAX_INT else None


def parse_size(text: str) -> int | None:
    """ngx_parse_size: ``1024``, ``8k``/``8K``, ``1m``/``1M``, ``1g``/``1G`` -> bytes."""
    scale = _SIZE_UNITS.get(text[-1:], 1)
    number = parse_int(text[:-1] if scale != 1 else text)
    if number is None or number > NGX_MAX_INT // scale:
        return None
    return number * scale


def parse_msec(text: str) -> int | None:
    """ngx_parse_time for millisecond values: ``500ms``, ``30s``, ``1m30s``, ``2h``.

    Units (w d h m s ms) may be combined in descending order; a bare number
    (or a trailing one) counts as seconds, as nginx does for its timeouts.
    """
    total = value = 0
    step = _MONTH_STEP
    valid = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _DIGITS:
            value = value * 10 + int(ch)
            valid = True
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        i += len(unit)
        if unit not in _TIME_UNITS:
            return None
        unit_step, scale = _TIME_UNITS[unit]
        if step >= unit_step or (unit == " " and step >= _TIME_UNITS["s"][0]):
            return None
        step = unit_step
        total += value * scale
        value = 0
        while i < len(text) and text[i] == " ":
            i += 1
    total += value * 1000
    if not valid or total > NGX_MAX_INT:
        return None
    return total


def parse_flag(text: str) -> bool | None:
    """``on`` / ``off``, in any case, as ngx_conf_set_flag_slot."""
    return {"on": True, "off": False}.get(text.lower())


# Tokens of a PCRE pattern that matter for the translation: escapes and
# character classes are skipped whole so that "(?<" inside them stays literal.
_PCRE_TOKENS = re.compile(
    r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|\(\?<(?=[A-Za-z_])|\(\?'(\w+)'", re.DOTALL
)


def _translate_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if token.startswith("(?<"):
        return "(?P<"
    if m.group(1) is not None:
        return f"(?P<{m.group(1)}>"
    return token


def compile_regex(pattern: str, *, caseless: bool = False) -> re.Pattern[str]:
    """Compile an nginx (PCRE) regular expression with Python's :mod:`re`.

    PCRE's named groups ``(?<name>...)`` and ``(?'name'...)`` become Python's
    ``(?P<name>...)``; matching is ASCII-only, as PCRE's is without UTF mode.
    Raises :class:`re.error` for a pattern Python cannot compile, so the
    configuration loader can report it at the directive.
    """
    flags = re.ASCII | (re.IGNORECASE if caseless else 0)
    return re.compile(_PCRE_TOKENS.sub(_translate_token, pattern), flags)


def regex_error(pattern: str, *, caseless: bool = False) -> str | None:
    """nginx's message for a regex that does not compile, else None."""
    try:
        compile_regex(pattern, caseless=caseless)
    except re.error as err:
        rest = pattern[err.pos :] if err.pos is not None else ""
        return f're.compile() failed: {err.msg} in "{pattern}" at "{rest}"'
    except (RecursionError, OverflowError, ValueError) as err:
        return f're.compile() failed: {err} in "{pattern}"'
    return None
