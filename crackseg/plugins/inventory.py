"""What ``crackseg plugins`` reports: every plugin as text or JSON, and ``--check`` (an author's CI step).

``--check`` collects what the manager found while loading (import and hook failures,
registration warnings, refused names) and runs the cheap contract checks of every
available component: its parameter defaults validate, a loss returns a finite scalar
with gradients on a tiny batch, a prompt set returns sentences for both classes.
Backbones, labelers and datasets are not built (that may need weights or data):
their contract tests in ``crackseg.testing`` do that.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from crackseg.base import schema
from crackseg.base.console import one_line
from crackseg.base.errors import CracksegError
from crackseg.plugins.manager import PluginInfo, PluginManager
from crackseg.plugins.registry import KINDS, SINGULAR, Entry


def plugin_lines(info: PluginInfo) -> list[str]:
    """The lines ``crackseg plugins`` prints for one plugin."""
    version = f" {info.version}" if info.version else ""
    lines = [f"{info.name}" + (f" ({info.distribution}{version})" if info.distribution else "")]
    if info.error:
        lines.append(f"  ERROR: {info.error}")
    if info.missing:
        lines.append(f"  NOT AVAILABLE: {info.missing}")
    for kind, names in sorted(info.registered.items()):
        if names:
            lines.append(f"  {kind}: {', '.join(names)}")
    if info.commands:
        lines.append(f"  commands: {', '.join(info.commands)}")
    for text in info.overrides:
        lines.append(f"  overrides: {text}")
    for text in info.rejected:
        lines.append(f"  REFUSED: {text}")
    for text in info.warnings:
        lines.append(f"  WARNING: {text}")
    return lines


def plugins_json(manager: PluginManager) -> list[dict[str, Any]]:
    """Every plugin as a JSON-able mapping (``crackseg plugins --json``)."""
    return [info.to_json() for _, info in sorted(manager.info.items())]


def check_plugins(manager: PluginManager) -> dict[str, list[str]]:
    """Plugin name → its problems (empty list: it passed); see the module docstring."""
    out: dict[str, list[str]] = {}
    for name, info in sorted(manager.info.items()):
        problems = []
        if info.error:
            problems.append(info.error)
        problems += [f"refused {text}" for text in info.rejected]
        problems += info.warnings
        if not info.missing:
            for kind in KINDS:
                for entry_name in info.registered.get(kind, []):
                    entry = manager.registries[kind].entry(entry_name)
                    if entry is not None and entry.plugin == name:
                        problems += [f"{SINGULAR[kind]} {entry_name!r}: {p}" for p in _contract(entry)]
        out[name] = problems
    return out


def _contract(entry: Entry) -> list[str]:
    try:
        params = {} if entry.params is None else schema.to_dict(schema.build(entry.params, {}, entry.name))
    except CracksegError as exc:
        return [f"its defaults do not validate: {exc}"]
    try:
        if entry.kind == "losses" and importlib.util.find_spec("torch") is not None:
            return _loss_contract(entry, params)
        if entry.kind == "prompts" and not entry.extras.get("opens"):
            return _prompt_contract(entry, params)
    except Exception as exc:  # noqa: BLE001 - a contract check reports, it does not crash
        return [f"building it with its defaults failed: {one_line(exc)}"]
    return []


def _loss_contract(entry: Entry, params: dict[str, Any]) -> list[str]:
    import torch

    from crackseg.plugins.factory import instantiate

    loss = instantiate(entry, params)
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16) > 0.8).float()
    value = loss(logits, target)
    if not isinstance(value, torch.Tensor) or value.ndim != 0 or not torch.isfinite(value):
        return [f"returned {value!r} on a tiny batch, not a finite scalar tensor"]
    value.backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        return ["gives no finite gradient for the logits"]
    return []


def _prompt_contract(entry: Entry, params: dict[str, Any]) -> list[str]:
    from crackseg.plugins.factory import instantiate

    sentences = instantiate(entry, params).sentences()
    if not isinstance(sentences, dict) or set(sentences) != {"normal", "crack"}:
        return [f"sentences() returned {type(sentences).__name__} without exactly the keys normal, crack"]
    bad = [k for k, v in sentences.items() if not v or not all(isinstance(t, str) and t.strip() for t in v)]
    return [f"sentences()[{k!r}] is empty or holds a non-string" for k in bad]
