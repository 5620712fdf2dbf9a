"""Helpers shared by the baseline backbones: size handling, input checks, weight loading.

Every baseline accepts any input size: :func:`pad_to_multiple` pads the batch
(replicate padding, bottom/right) to the network's ``size_multiple`` and
:func:`crop_outputs` crops every returned map back to the input size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crackseg import CracksegError


def check_input(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise :class:`CracksegError` unless ``x`` is a float ``[B, in_channels, H, W]`` batch."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise CracksegError(f"backbone {name!r} expects a [B,{in_channels},H,W] tensor, got {shape}")
    if x.shape[1] != in_channels:
        raise CracksegError(
            f"backbone {name!r} expects {in_channels} input channels, got {x.shape[1]} "
            f"(set the backbone's in_channels parameter to match the images)"
        )
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise CracksegError(f"backbone {name!r} got an empty image of size {tuple(x.shape[2:])}")
    if not torch.is_floating_point(x):
        raise CracksegError(f"backbone {name!r} expects a float tensor, got {x.dtype}")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``x`` on the bottom/right (replicating the border) to a multiple of ``multiple``.

    Returns the padded batch and the original ``(H, W)``.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def crop_outputs(out: Any, size: tuple[int, int]) -> Any:
    """Crop a map or a dict of maps to ``size`` = ``(H, W)`` (top-left anchored)."""
    h, w = size
    if isinstance(out, dict):
        return {k: v[..., :h, :w] for k, v in out.items()}
    return out[..., :h, :w]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _unwrap_state_dict(obj: Any, path: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state", "net"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CracksegError(
            f"pretrained_weights {path!r} does not hold a state dict (a mapping of parameter names to tensors)"
        )
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        for prefix in ("module.", "model.", "net."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _vgg_layers(sd: dict[str, torch.Tensor]) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]]:
    """Conv (and following BatchNorm) tensors of a torchvision-style VGG ``features.N`` state dict, in order."""
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "features" and parts[1].isdigit():
            layers.setdefault(int(parts[1]), {})[parts[2]] = v
    seq: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]] = []
    for idx in sorted(layers):
        t = layers[idx]
        if "weight" in t and t["weight"].ndim == 4:
            seq.append((t, None))
        elif "running_mean" in t and seq and seq[-1][1] is None:
            seq[-1] = (seq[-1][0], t)
    return seq


def _load_vgg_features(
    model: nn.Module, sd: dict[str, torch.Tensor], path: str
) -> int:
    """Copy VGG16 conv (+BN) weights in order onto ``model.vgg_encoder_layers()``; return tensors copied."""
    targets: list[tuple[nn.Conv2d, nn.BatchNorm2d | None]] = model.vgg_encoder_layers()  # type: ignore[operator]
    source = _vgg_layers(sd)
    if len(source) < len(targets):
        return 0
    copied = 0
    with torch.no_grad():
        for (conv, bn), (src_conv, src_bn) in zip(targets, source):
            if tuple(conv.weight.shape) != tuple(src_conv["weight"].shape):
                raise CracksegError(
                    f"pretrained_weights {path!r}: VGG layer shape {tuple(src_conv['weight'].shape)} does not "
                    f"fit {tuple(conv.weight.shape)}; use default base_channels/in_channels for VGG weights"
                )
            conv.weight.copy_(src_conv["weight"])
            copied += 1
            src_bias = src_conv.get("bias")
            if conv.bias is not None and src_bias is not None:
                conv.bias.copy_(src_bias)
                copied += 1
            if bn is not None and src_bn is not None:
                bn.weight.copy_(src_bn["weight"])
                bn.bias.copy_(src_bn["bias"])
                mean = src_bn["running_mean"].clone()
                if conv.bias is None and src_bias is not None:
                    mean -= src_bias  # fold the dropped conv bias into the BN statistics
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(src_bn["running_var"])
                copied += 4
    return copied


def load_pretrained(model: nn.Module, path: str, name: str) -> None:
    """Initialise ``model`` from a local state-dict file (never downloads).

    Accepts a state dict saved from the same backbone (keys matched by name;
    ``module.``/``model.`` prefixes and ``{"state_dict": ...}`` wrappers are
    handled) or, for VGG-based backbones, a torchvision VGG16 / VGG16-BN state
    dict whose ``features.*`` convolutions are copied in order onto the encoder.
    Anything else raises :class:`CracksegError`.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CracksegError(
            f"backbone {name!r}: pretrained_weights file {path!r} does not exist "
            "(give a local .pt/.pth state dict; weights are never downloaded)"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error
        raise CracksegError(
            f"backbone {name!r}: cannot read pretrained_weights {path!r} ({type(exc).__name__}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from None
    sd = _unwrap_state_dict(obj, path)
    own = model.state_dict()
    common = [k for k in sd if k in own]
    if common:
        bad = [k for k in common if tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad:
            k = bad[0]
            raise CracksegError(
                f"backbone {name!r}: pretrained_weights {path!r} has {k!r} of shape {tuple(sd[k].shape)}, "
                f"the model needs {tuple(own[k].shape)} (check in_channels/base_channels)"
            )
        model.load_state_dict({k: sd[k] for k in common}, strict=False)
        return
    if hasattr(model, "vgg_encoder_layers") and _load_vgg_features(model, sd, path):
        return
    raise CracksegError(
        f"backbone {name!r}: no tensor in pretrained_weights {path!r} matches the model "
        "(expected a state dict of this backbone"
        + (" or a torchvision VGG16 state dict)" if hasattr(model, "vgg_encoder_layers") else ")")
    )
