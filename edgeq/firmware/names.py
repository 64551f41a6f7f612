"""Turn user input into text that is safe to put into generated C/C++ and CMake.

Everything a user types (``--name``, ``--namespace``, ``--section``, label files, the
model's file name) reaches generated code only through these functions, which are also
the Jinja filters. The rule is "sanitize what has an obvious safe spelling, reject what
has none": a model name becomes an identifier whatever was typed, a linker section name
that is not plain is refused, because guessing a different section would silently
misplace the model.
"""

from __future__ import annotations

import re
import unicodedata

from edgeq.errors import UserError

# C23 and C++23 keywords, alternative operator spellings, and a few macros every C
# environment defines: an identifier equal to one of these would not compile, or would
# be rewritten by the preprocessor.
_KEYWORDS = frozenset(
    """
    alignas alignof and and_eq asm atomic_cancel atomic_commit atomic_noexcept auto
    bitand bitor bool break case catch char char8_t char16_t char32_t class compl
    concept const consteval constexpr constinit const_cast continue co_await co_return
    co_yield decltype default delete do double dynamic_cast else enum explicit export
    extern false float for friend goto if inline int long mutable namespace new
    noexcept not not_eq nullptr operator or or_eq private protected public reflexpr
    register reinterpret_cast requires restrict return short signed sizeof static
    static_assert static_cast struct switch synchronized template this thread_local
    throw true try typedef typeid typeof typeof_unqual typename union unsigned using
    virtual void volatile wchar_t while xor xor_eq
    _Alignas _Alignof _Atomic _BitInt _Bool _Complex _Decimal128 _Decimal32 _Decimal64
    _Generic _Imaginary _Noreturn _Static_assert _Thread_local
    NULL EOF errno assert stdin stdout stderr main
    """.split()
)
_MAX_IDENTIFIER = 64
_SECTION_RE = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]{0,127}$")
_COMMENT_SAFE = re.compile(r"[^A-Za-z0-9 _.,:;+\-=@#%&()\[\]{}<>!~^'|$]")


def c_identifier(text: str, *, fallback: str = "model") -> str:
    """Return a lower_snake_case C/C++ identifier derived from ``text``.

    Why each step: NFKD+ASCII keeps "Modèle" readable as "modele"; camel-case boundaries
    become underscores so ``MobileNetV2`` and ``mobilenet_v2`` look alike; any other
    character becomes "_"; runs of "_" collapse and edges are stripped because "__"
    anywhere and a leading "_" + capital are reserved to the implementation; a leading
    digit or a keyword gets an "m_" prefix (the name is also used on its own, e.g. as a
    CMake project name). The result is capped at 64 characters for old toolchains.
    """
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_text)
    ident = re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()
    ident = re.sub(r"_+", "_", ident)
    if not ident:
        ident = fallback
    if ident[0].isdigit() or ident in _KEYWORDS:
        ident = f"m_{ident}"
    return ident[:_MAX_IDENTIFIER].rstrip("_")


def c_camel(text: str) -> str:
    """``person_detect`` → ``PersonDetect``: the TFLM spelling inside ``k<Name>...`` constants."""
    ident = c_identifier(text)
    return "".join(part[:1].upper() + part[1:] for part in ident.split("_") if part)


def c_macro(text: str) -> str:
    """An upper-case identifier for include guards and macros."""
    return c_identifier(text).upper()


def cpp_namespace(text: str) -> str:
    """Sanitize a (possibly nested, ``a::b``) C++ namespace, component by component."""
    parts = [p for p in re.split(r"::|\.", str(text)) if p.strip()]
    if not parts:
        raise UserError(f"namespace {text!r} is empty", hint="pass e.g. --namespace models")
    return "::".join(c_identifier(p, fallback="ns") for p in parts)


def section_name(text: str) -> str:
    """Validate a linker section name; refuse rather than guess (see module docstring)."""
    if not _SECTION_RE.match(str(text)):
        raise UserError(
            f"invalid linker section name {text!r}",
            hint="use letters, digits, '_' and '.', e.g. --section .rodata.model or --section .ext_flash",
        )
    return str(text)


def c_string(text: str) -> str:
    """A double-quoted C string literal for arbitrary text (labels, names in messages).

    Non-ASCII bytes become three-digit octal escapes (a following digit cannot extend
    them, unlike hex escapes); '?' is escaped so no trigraph can form.
    """
    out = ['"']
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "?":
            out.append("\\?")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def c_comment(text: str) -> str:
    """Text safe inside ``/* */`` and ``//`` comments: a whitelist, so no ``*/``, no
    trailing backslash (line splice), no trigraph and no newline can get through."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return _COMMENT_SAFE.sub("_", ascii_text)[:200]


__all__ = ["c_identifier", "c_camel", "c_macro", "cpp_namespace", "section_name", "c_string", "c_comment"]
