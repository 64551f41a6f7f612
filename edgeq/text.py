"""Make untrusted text safe to print on a terminal: the one sanitiser edgeq uses.

Why: text that edgeq did not write -- what a benchmarked device prints (its OS and CPU
names, its error output), file names, server messages -- can carry terminal escape
sequences. Printed raw, a device could clear the user's screen, retitle the window, hide
lines with carriage returns or reorder text with bidi overrides. rich strips only a few
control characters (BEL, BS, VT, FF, CR) and lets ESC through, so everything untrusted goes
through ``printable()`` before it is printed or put into an error message.
"""

from __future__ import annotations

import re

# Whole escape sequences first, so their parameters ("[2J", "]0;title") vanish with them:
# CSI (ESC [ ... final byte), OSC/DCS/SOS/PM/APC strings (up to BEL or ST), then any other
# two-byte ESC sequence; the 8-bit C1 forms of CSI and OSC too.
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]P^_X]|[\x9d\x90\x9e\x9f\x98])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# C0 and C1 controls, DEL, bidi embeddings/overrides/isolates (they reorder what follows),
# and the Unicode line/paragraph separators some terminals treat as newlines.
_CONTROLS = "".join(chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)])
_INVISIBLE = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\u061c"


def printable(text: object, *, keep: str = "\n\t") -> str:
    """``text`` without escape sequences and control characters (``keep`` lists the allowed ones).

    The default keeps newlines and tabs, for multi-line messages; pass ``keep=""`` for a
    value that must stay on one line (a CPU name, a table cell). A non-str is ``str()``-ed
    first, so callers can pass whatever an untrusted document contained.
    """
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():  # the common case (bidi controls and separators are not "printable")
        return value
    value = _SEQUENCES.sub("", value)
    drop: dict[int, str | None] = {ord(ch): None for ch in _CONTROLS + _INVISIBLE if ch not in keep}
    for space in "\n\t":  # a newline or tab dropped from a one-line value is still a word break
        if space not in keep:
            drop[ord(space)] = " "
    return value.translate(drop)


def shorten(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def one_line(text: object, width: int = 200) -> str:
    """A printable single-line value of at most ``width`` characters (device names, versions)."""
    return shorten(" ".join(printable(text, keep="").split()), width)


def first_line(exc: BaseException, *, skip: tuple[str, ...] = ()) -> str:
    """An exception's first non-blank line (at most 300 characters) for a one-line error
    message: native libraries raise with pages of context. Lines starting with ``skip`` are
    passed over unless nothing else is left; an empty message gives the exception's type."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(skip)] if skip else lines
    return (useful or lines or [type(exc).__name__])[0][:300]


__all__ = ["printable", "shorten", "one_line", "first_line"]
