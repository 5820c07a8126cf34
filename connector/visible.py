"""Text a person can see: keys and memos hold no control characters, and output never carries raw ones.

Customer keys, idempotency keys and source references are refused when they hold a control or
format character (Unicode categories Cc, Cf, Cs, Zl, Zp: ANSI escape sequences, NUL, line
breaks, bidirectional overrides, zero-width characters, unpaired surrogates). Memos follow the
same rule, except that zero-width joiners (which some scripts and emoji need) are allowed.
Anything printed from stored data goes through `escape`, so a terminal never receives a raw
escape sequence, whatever was stored before these checks existed.
"""

from __future__ import annotations

import unicodedata

from connector.errors import InvalidInput

_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset({"\u200c", "\u200d"})  # ZWNJ / ZWJ: needed by Persian, Indic scripts and emoji


def hidden(ch: str) -> bool:
    """True for a character that is invisible or acts on the terminal instead of showing."""
    return unicodedata.category(ch) in _HIDDEN


def first_hidden(text: str, *, memo: bool = False) -> int | None:
    """Index of the first control/format character in `text`, or None."""
    if text.isprintable():  # the common case, at C speed
        return None
    for i, ch in enumerate(text):
        if hidden(ch) and not (memo and ch in _JOINERS):
            return i
    return None


def check(value: str, field: str, *, memo: bool = False) -> str:
    """Return `value`, or refuse it (exit 2) naming the first hidden character and where it is."""
    if value.isprintable():  # the common case, at C speed (as in `first_hidden`)
        return value
    at = first_hidden(value, memo=memo)
    if at is None:
        return value
    ch = value[at]
    name = unicodedata.name(ch, "") or _C0_NAMES.get(ord(ch), "control character")
    what = "memos" if memo else "keys"
    shown = escape(value if len(value) <= 80 else value[:80] + "...")
    raise InvalidInput(f"{field}: '{shown}' contains {name} (U+{ord(ch):04X}) at character {at + 1}; "
                       f"{what} must be visible text without control characters or escape sequences",
                       field=field)


def escape(text: str, *, json: bool = False) -> str:
    """`text` with every control/format character written as a visible escape (`\\x1b`, `\\u202e`).

    With `json`, the escapes are JSON's (`\\u001b`, surrogate pairs above U+FFFF), for use
    inside JSON text, where such characters can only stand in strings.
    """
    if text.isprintable():  # the common case, at C speed: printable text holds no hidden character
        return text
    escaped = _json_escaped if json else _escaped
    return "".join(escaped(ch) if hidden(ch) else ch for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _json_escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


_C0_NAMES = {
    0x00: "a NUL byte", 0x1B: "an ESCAPE character", 0x7F: "a DELETE character", 0x0A: "a line break",
    0x0D: "a carriage return", 0x09: "a tab"
}
