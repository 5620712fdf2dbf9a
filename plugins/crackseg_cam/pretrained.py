"""ImageNet initialisation of the patch classifier, or a loud fallback to random weights.

``classifier.weights: imagenet`` (the default) starts the classifier from its architecture's
ImageNet weights as the paper's fine-tuning schedule and König et al.'s code assume. They come
from torchvision's own download and cache (``$TORCH_HOME/hub/checkpoints``), or timm's for
``timm:<name>``; a machine without network uses the cached file. Where neither works the
classifier trains from random weights, one warning line says so, and the labeler carries it as
its note (``metrics.json`` notes, results tables). ``weights: null`` trains from scratch on
purpose (CPU presets, tests); a path names a local state-dict file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crackseg import CracksegError

IMAGENET = "imagenet"


@dataclass(frozen=True)
class Init:
    """How a classifier starts: ``weights`` for :func:`~crackseg_cam.classifier.build_model`, and why."""

    #: ``"imagenet"``, a local file, or None (random)
    weights: str | None
    #: "" when the request is honoured; else the one line that says what happens instead
    fallback: str = ""


_resolved: dict[str, Init] = {}


def resolve_init(arch: str, weights: str | None) -> Init:
    """``weights`` as it can be honoured here: ImageNet when its file is cached or downloads, else random."""
    if weights != IMAGENET:
        return Init(weights)
    if arch not in _resolved:
        try:
            imagenet_file(arch)
            _resolved[arch] = Init(IMAGENET)
        except Exception as exc:  # noqa: BLE001 - no network, no cache, no weights for this arch: all fall back
            _resolved[arch] = Init(None, (
                f"patch classifier {arch} trained from RANDOM weights: its ImageNet weights are not available "
                f"here ({_reason(exc)}); put {_expected(arch)} there or set labeler.classifier.weights=FILE "
                f"(null trains from scratch on purpose)"))
    return _resolved[arch]


def effective_config(cfg: Any) -> tuple[Any, str]:
    """The classifier settings as trained here (``weights`` resolved) and the fallback line ("" if none)."""
    init = resolve_init(cfg.arch, cfg.weights)
    return (replace(cfg, weights=init.weights) if init.weights != cfg.weights else cfg), init.fallback


def imagenet_file(arch: str) -> Path:
    """The local file of ``arch``'s ImageNet weights: from the cache, else downloaded into it."""
    import torch

    cache = _cache_dir()
    if arch.startswith("timm:"):
        name = arch[5:]
        path = cache / f"timm-{name}.pth"
        if not path.is_file():
            import timm

            if not _resolves("huggingface.co"):  # timm's hub client retries for a minute before it gives up
                raise CracksegError(f"no network (huggingface.co does not resolve) and no {path.name} in the cache")
            model = timm.create_model(name, pretrained=True)  # timm's own download and cache
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
            torch.save(model.state_dict(), tmp)
            os.replace(tmp, path)
        return path
    import torchvision

    try:
        url = torchvision.models.get_model_weights(arch).DEFAULT.url
    except (ValueError, KeyError, AttributeError):
        raise CracksegError(f"torchvision has no ImageNet weights for {arch!r}") from None
    path = _expected(arch)
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)  # writes a temporary file, then moves it
    return path


def _expected(arch: str) -> Path:
    """Where the weights file of ``arch`` is looked for (the cache folder when the name is unknown)."""
    if arch.startswith("timm:"):
        return _cache_dir() / f"timm-{arch[5:]}.pth"
    try:
        import torchvision

        return _cache_dir() / os.path.basename(torchvision.models.get_model_weights(arch).DEFAULT.url)
    except (ValueError, KeyError, AttributeError):
        return _cache_dir()


def _resolves(host: str) -> bool:
    import socket

    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _cache_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:120]


__all__ = ["IMAGENET", "Init", "resolve_init", "effective_config", "imagenet_file"]

