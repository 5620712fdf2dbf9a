"""What crackseg prints to the user: one-line warnings and errors, exceptions as one line.

Every ``crackseg: warning: ...`` and ``crackseg: error: ...`` line goes through here, so
the wording is one format and ``--quiet`` / rank rules live in one place.
"""

from __future__ import annotations

import os
import sys

#: the prefix of every line crackseg prints about a problem
PROG = "crackseg"
#: how much of an offending value an error line quotes at most
MAX_QUOTE = 200


def one_line(exc: BaseException) -> str:
    """An exception as one line: ``Type: message`` with whitespace collapsed."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())


def first_line(exc: BaseException, with_type: bool = True) -> str:
    """The first line of an exception's message (``Type: line`` unless ``with_type`` is false), at most
    :data:`MAX_QUOTE` characters: for messages that run over many lines (a compiler's, a C++ library's)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if with_type:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1] + "…"


def is_rank0() -> bool:
    """True unless this process is a torch.distributed worker of rank > 0 (``RANK`` set by torchrun)."""
    return os.environ.get("RANK", "0") in ("", "0")


def warn(text: str, *, all_ranks: bool = False) -> str:
    """Print ``crackseg: warning: text`` on stderr (rank 0 only, unless ``all_ranks``); return ``text``.

    Nothing is printed for an empty text, so ``warn(check())`` is the idiom for an optional warning.
    """
    if text and (all_ranks or is_rank0()):
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)
    return text


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` for an error line, cut to ``limit`` characters (ending with ``…``).

    A huge value (a 100,000-character string, a list of millions of items) is never printed whole;
    sequences and mappings are repr'd piece by piece, so a shared, alias-expanded value costs no more
    than the characters kept.
    """
    text = _bounded_repr(value, limit + 1)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bounded_repr(value: object, budget: int) -> str:
    """``repr(value)``, stopped once it holds more than ``budget`` characters."""
    if isinstance(value, (list, tuple, dict, set, frozenset)) and value:
        if isinstance(value, dict):
            opening, closing = "{", "}"
            items = (f"{_bounded_repr(k, budget)}: {_bounded_repr(v, budget)}" for k, v in value.items())
        else:
            opening, closing = {list: ("[", "]"), tuple: ("(", ")")}.get(type(value), ("{", "}"))
            items = (_bounded_repr(v, budget) for v in value)
        out = opening
        for i, item in enumerate(items):
            out += (", " if i else "") + item
            if len(out) > budget:
                return out
        if isinstance(value, tuple) and len(value) == 1:
            out += ","
        return out + closing
    if isinstance(value, (str, bytes)) and len(value) > budget:
        return repr(value[:budget])
    return repr(value)


#: the longest line :func:`error_line` prints (a safety net: messages quote values with :func:`quote`)
MAX_LINE = 1000


def error_line(text: str) -> str:
    """The line the CLI prints for a user error, at most :data:`MAX_LINE` characters."""
    line = f"{PROG}: error: {text}"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
