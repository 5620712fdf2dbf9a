"""The text of ``crackseg list`` (registered components) and ``crackseg plugins`` (``--check``, ``--json``).

What a plugin reports about itself (its lines, its JSON, the checks) is
:mod:`crackseg.plugins.inventory`; this module lays it out for the two commands.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Iterator

from crackseg.base.errors import CracksegError
from crackseg.plugins import registry
from crackseg.plugins.inventory import check_plugins, plugin_lines, plugins_json
from crackseg.plugins.manager import PluginManager
from crackseg.plugins.registry import KINDS, unknown_name_message


def plugins_report(manager: PluginManager, *, as_json: bool = False, check: bool = False) -> tuple[list[str], int]:
    """The lines ``crackseg plugins`` prints and its exit status (1: ``--check`` found a problem).

    ``check`` runs the cheap contract checks (:func:`crackseg.plugins.inventory.check_plugins`);
    ``as_json`` gives one JSON document instead of text.
    """
    if check:
        results = check_plugins(manager)
        lines = [json.dumps(results, indent=2)] if as_json else list(check_lines(manager, results))
        return lines, 1 if any(results.values()) else 0
    if as_json:
        return [json.dumps(plugins_json(manager), indent=2)], 0
    return [line for _, info in sorted(manager.info.items()) for line in plugin_lines(info)], 0


def check_lines(manager: PluginManager, results: dict[str, list[str]]) -> Iterator[str]:
    """The lines of ``crackseg plugins --check``: each plugin's state, then its problems (``results``)."""
    for name, problems in results.items():
        info = manager.info[name]
        state = "not checked: " + info.missing if info.missing else ("ok" if not problems else "PROBLEMS")
        yield f"{info.describe()}: {state}"
        yield from (f"  - {text}" for text in problems)


def registry_lines(kind: str, pattern: str = "*") -> Iterator[str]:
    """The lines of ``crackseg list KIND PATTERN``: matching components, their parameters, the unavailable ones.

    Raises a one-line :class:`CracksegError` (at the first line) for an unknown ``kind`` or when nothing matches
    ``pattern`` (shell wildcards), with a "did you mean" for a misspelt kind or name.
    """
    if kind not in KINDS:
        raise CracksegError(unknown_name_message("kind", kind, list(KINDS)))
    reg = registry(kind)
    names = reg.names(pattern)
    missing = [e for e in reg.unavailable() if fnmatch.fnmatchcase(e.name, pattern)]
    if not names and not missing:
        hint = ""
        if not any(c in pattern for c in "*?["):  # a name, not a wildcard: the closest one
            known = {n.lower(): n for n in [*reg.names(), *(e.name for e in reg.unavailable())]}
            close = difflib.get_close_matches(pattern.lower(), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {known[close[0]]!r}?" if close else ""
        raise CracksegError(f"no {kind} match {pattern!r}{hint} (available: {', '.join(reg.names()) or 'none'})")
    width = max(len(n) for n in [*names, *(e.name for e in missing)])
    for n in names:
        e = reg.get(n)
        params = ", ".join(f"{k}={v!r}" for k, v in e.param_defaults().items())
        yield f"{n:<{width}}  {e.description}  [{e.plugin}]"
        if params:
            yield f"{'':<{width}}    params: {params}"
    for m in missing:
        yield f"{m.name:<{width}}  (not available: {m.unavailable})"
