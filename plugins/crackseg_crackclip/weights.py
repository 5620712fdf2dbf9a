"""Offline CLIP weights: read a file or folder from disk into open_clip's layout.

Accepted by the backbone's ``weights:`` parameter:

* an OpenAI CLIP file (the TorchScript archive ``ViT-L-14-336px.pt`` that
  ``clip.load`` / open_clip download, or a plain state dict in OpenAI layout);
* an open_clip checkpoint (``torch.save`` of ``model.state_dict()``, optionally
  under a ``"state_dict"`` key, optionally with a ``module.`` prefix, or a
  ``.safetensors`` file such as ``open_clip_model.safetensors``);
* a Hugging Face CLIP folder (``config.json`` + ``model.safetensors`` /
  ``pytorch_model.bin``, e.g. ``openai/clip-vit-large-patch14-336``), read with
  ``transformers`` (``local_files_only=True``) and converted key by key.

OpenAI's and open_clip's layouts are the same, so only the Hugging Face layout
needs converting. Visual position embeddings are resized (bicubic,
``antialias=True``, as the authors' vendored open_clip did) when the weights
were trained at another resolution than the model is built for.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from crackseg import ConfigError

#: entries of an OpenAI TorchScript state dict that are not parameters
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The CLIP state dict stored at ``path`` (file or Hugging Face folder), in open_clip layout."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"weights {path}: no such file or folder; give a local CLIP weights file or folder")
    if p.is_dir():
        sd = _read_hf_dir(p)
    else:
        sd = _read_file(p)
    sd = _unwrap(sd, str(path))
    if _is_hf_layout(sd):
        sd = hf_to_open_clip(sd)
    return sd


def _read_file(p: Path) -> Any:
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as exc:  # noqa: BLE001 - report any reader failure in one line
            raise ConfigError(f"weights {p}: cannot read safetensors file ({_short(exc)})") from None
    # An OpenAI TorchScript archive first (what clip.load downloads), then a pickled state dict.
    try:
        return torch.jit.load(str(p), map_location="cpu").state_dict()
    except Exception:  # noqa: BLE001 - not a TorchScript archive; try torch.load below
        pass
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(
            f"weights {p}: not a TorchScript archive, state dict or safetensors file ({_short(exc)})"
        ) from None


def _read_hf_dir(p: Path) -> dict[str, torch.Tensor]:
    if not (p / "config.json").is_file():
        raise ConfigError(
            f"weights {p}: a folder must be a Hugging Face CLIP model folder (config.json + model "
            "weights); for open_clip or OpenAI weights give the file itself"
        )
    try:
        from transformers import CLIPModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        raise ConfigError(f"weights {p}: reading a Hugging Face folder needs the 'transformers' package") from None
    try:
        hf = CLIPModel.from_pretrained(str(p), local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"weights {p}: cannot read it as a Hugging Face CLIP model ({_short(exc)})") from None
    return {k: v.detach() for k, v in hf.state_dict().items()}


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise ConfigError(f"weights {source}: expected a state dict (name → tensor), got {type(obj).__name__}")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ConfigError(f"weights {source}: the file holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    for k in _JIT_EXTRAS:
        sd.pop(k, None)
    return sd


def _is_hf_layout(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("vision_model.") for k in sd)


# -- Hugging Face → open_clip -------------------------------------------------------
_HF_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def hf_to_open_clip(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convert a ``transformers`` ``CLIPModel`` state dict to open_clip's ``CLIP`` layout."""
    out: dict[str, torch.Tensor] = {}
    get = sd.__getitem__
    try:
        out["visual.class_embedding"] = get("vision_model.embeddings.class_embedding")
        out["visual.conv1.weight"] = get("vision_model.embeddings.patch_embedding.weight")
        out["visual.positional_embedding"] = get("vision_model.embeddings.position_embedding.weight")
        _copy_ln(sd, out, "vision_model.pre_layrnorm", "visual.ln_pre")
        _copy_ln(sd, out, "vision_model.post_layernorm", "visual.ln_post")
        out["visual.proj"] = get("visual_projection.weight").t().contiguous()
        out["token_embedding.weight"] = get("text_model.embeddings.token_embedding.weight")
        out["positional_embedding"] = get("text_model.embeddings.position_embedding.weight")
        _copy_ln(sd, out, "text_model.final_layer_norm", "ln_final")
        out["text_projection"] = get("text_projection.weight").t().contiguous()
        out["logit_scale"] = get("logit_scale")
    except KeyError as exc:
        raise ConfigError(f"Hugging Face CLIP weights lack the entry {exc.args[0]!r}; is this a CLIPModel?") from None
    for hf_prefix, oc_prefix in (
        ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
        ("text_model.encoder.layers.", "transformer.resblocks."),
    ):
        n = 1 + max(int(k[len(hf_prefix):].split(".")[0]) for k in sd if k.startswith(hf_prefix))
        for i in range(n):
            src, dst = f"{hf_prefix}{i}.", f"{oc_prefix}{i}."
            for part in ("weight", "bias"):
                out[f"{dst}attn.in_proj_{part}"] = torch.cat(
                    [sd[f"{src}self_attn.{q}_proj.{part}"] for q in ("q", "k", "v")], dim=0
                )
                for hf_name, oc_name in _HF_BLOCK.items():
                    out[f"{dst}{oc_name}.{part}"] = sd[f"{src}{hf_name}.{part}"]
    return out


def _copy_ln(sd: dict[str, torch.Tensor], out: dict[str, torch.Tensor], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = sd[f"{src}.weight"]
    out[f"{dst}.bias"] = sd[f"{src}.bias"]


# -- position embeddings and loading ------------------------------------------------------
def resize_grid_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ``[1 + g*g, C]`` ViT position embedding to ``grid`` (bicubic, antialias, class token kept)."""
    cls_tok, patches = pos[:1], pos[1:]
    old = int(round(math.sqrt(patches.shape[0])))
    if old * old != patches.shape[0]:
        raise ConfigError(f"position embedding with {patches.shape[0]} patch positions is not a square grid")
    if (old, old) == tuple(grid):
        return pos
    img = patches.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=tuple(grid), mode="bicubic", antialias=True, align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([cls_tok, img], dim=0)


def load_into(model: torch.nn.Module, sd: dict[str, torch.Tensor], source: str, model_name: str) -> None:
    """Load ``sd`` (open_clip layout) into the open_clip ``model``, strictly, with clear errors."""
    sd = dict(sd)
    own = model.state_dict()
    key = "visual.positional_embedding"
    if key in sd and key in own and sd[key].shape != own[key].shape:
        sd[key] = resize_grid_pos_embed(sd[key], tuple(model.visual.grid_size))
    if "logit_scale" in sd and "logit_scale" in own and sd["logit_scale"].shape != own["logit_scale"].shape:
        sd["logit_scale"] = sd["logit_scale"].reshape(own["logit_scale"].shape)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(sd[k].shape)}, expected {tuple(own[k].shape)}")
        if missing:
            parts.append(f"{len(missing)} missing entries (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected entries (e.g. {unexpected[0]})")
        raise ConfigError(
            f"weights {source} do not fit model {model_name!r}: {'; '.join(parts)}; "
            "set 'model' to the architecture these weights belong to"
        )
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(sd[k].to(dtype=t.dtype))


def weights_help(model_name: str) -> str:
    """The one-line error for a backbone built without any weights."""
    return (
        f"crackclip needs CLIP weights for {model_name!r}: set 'weights' to a local file or folder "
        "(OpenAI .pt archive, open_clip checkpoint, or Hugging Face CLIP folder), or 'pretrained' to an "
        "open_clip tag such as 'openai' (downloads), or 'random_init: true' for tests only"
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]

