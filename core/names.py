"""File names from untrusted sources: which ones to refuse, and how to show any of them safely.

A name is shown on terminals and in web pages. Control characters (NUL, ESC of ANSI sequences,
newlines, C1 codes), Unicode format characters (bidi overrides such as U+202E, zero-width
characters) and line separators can hide or reorder what the reader sees, so they are shown as
visible escapes (``\\x1b``, ``\\u202e``) instead.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories shown escaped: controls, format characters (bidi, zero-width), surrogates
#: (undecodable bytes in file-system names), line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def display_name(text: str) -> str:
    """``text`` with every control, bidi, zero-width or separator character as a visible escape."""
    return "".join(_escape(char) if unicodedata.category(char) in _ESCAPED_CATEGORIES else char for char in text)


def name_problem(name: str) -> str | None:
    """Why a file name is refused (it contains control characters or undecodable bytes), or None."""
    categories = {unicodedata.category(char) for char in name}
    if "Cc" in categories:
        return f"file name contains control characters: {display_name(name)}"
    if "Cs" in categories:
        return f"file name is not valid UTF-8: {display_name(name)}"
    return None


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
