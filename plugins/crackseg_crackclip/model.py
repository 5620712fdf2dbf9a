"""The CrackCLIP backbone: frozen open_clip towers + one linear adapter per ViT stage.

Pipeline per stage ``s`` (the authors' ``model.py``/``train.py``, APRIL-GAN's head):
patch tokens of block ``layers[s]`` (before ``ln_post``/``proj``, class token
dropped) → ``Linear(width → embed_dim)`` → L2 normalisation → ``logit_scale ×``
dot product with the text matrix ``[normal, crack]`` → reshape to the patch
grid → bilinear upsampling (``align_corners=True``) to the input size →
softmax over the two classes. Because a two-class softmax is
``sigmoid(l_crack − l_normal)`` and bilinear upsampling is linear, the module
returns the per-stage crack logit ``d_s = up(l_crack − l_normal)``; the fused
map is ``logit(mean_s sigmoid(d_s))``, i.e. the authors' sum of the four
crack probabilities divided by 4.

``crackclip-zeroshot`` replaces each adapter by the model's own ``ln_post`` +
``proj`` (nothing to train).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crackseg import ConfigError

from . import weights as W
from .text import text_matrix
from .token_cache import TokenCache

#: OpenAI CLIP normalisation statistics (the authors' preprocessing)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

#: seed of the frozen towers when ``random_init: true`` (adapters use the global RNG)
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class BuildSpec:
    """Everything that rebuilds the frozen part of the backbone (validated params)."""

    model: str = "ViT-L-14-336"
    image_size: int = 518
    layers: tuple[int, ...] = (6, 12, 18, 24)
    weights: str | None = None
    pretrained: str | None = None
    random_init: bool = False
    activation: str = "gelu"
    prompts: str = "crack"
    train_prompts: str | None = None
    prompt_object: str | None = None
    logit_scale: float = 100.0
    token_cache: str = "memory"
    token_cache_dir: str | None = None
    token_cache_max_gb: float = 8.0
    zeroshot: bool = False


class CrackCLIP(nn.Module):
    """Frozen open_clip ViT + per-stage adapters → ``{"stage1".."stageN", "out"}`` crack logits."""

    input_mean = OPENAI_MEAN
    input_std = OPENAI_STD

    def __init__(
        self,
        clip: nn.Module,
        tokenizer: Any,
        sentences: dict[str, list[str]],
        spec: BuildSpec,
        train_sentences: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.clip = clip.eval().requires_grad_(False)
        self._tokenizer = tokenizer
        self._sentences = sentences
        #: the authors' release trains against other prompts (generic) than it tests with (crack)
        self._train_sentences = train_sentences if train_sentences is not None else sentences
        visual = clip.visual
        self.layers = tuple(spec.layers)
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.fixed_input_size = int(spec.image_size)
        self.width = int(visual.conv1.out_channels)
        self.embed_dim = int(visual.output_dim)
        self.logit_scale = float(spec.logit_scale)
        self.stage_names = [f"stage{i + 1}" for i in range(len(self.layers))]
        self.loss_weights = {name: 1.0 for name in self.stage_names}
        if spec.zeroshot:
            if getattr(visual, "proj", None) is None:
                raise ConfigError(f"crackclip-zeroshot: model {spec.model!r} has no visual projection")
            self.adapters = None
        else:
            self.adapters = nn.ModuleList(nn.Linear(self.width, self.embed_dim) for _ in self.layers)
        self.register_buffer("text_features", torch.empty(0), persistent=False)
        self.register_buffer("train_text_features", torch.empty(0), persistent=False)
        self.weights_fingerprint = _weights_fingerprint(clip, spec)
        self.token_cache: TokenCache | None = None
        if spec.token_cache != "off":
            tokens_fp = hashlib.sha1(
                f"{self.weights_fingerprint}|{self.layers}|{spec.image_size}".encode()
            ).hexdigest()[:16]
            self.token_cache = TokenCache(
                spec.token_cache,
                int(spec.token_cache_max_gb * 2**30),
                fingerprint=tokens_fp,
                directory=spec.token_cache_dir,
            )

    # -- module behaviour ---------------------------------------------------------------
    def train(self, mode: bool = True) -> CrackCLIP:
        super().train(mode)
        self.clip.eval()  # the towers are frozen: never in training mode
        return self

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """Only the trainable adapters (empty for the zero-shot variant)."""
        if self.adapters is None:
            return {}
        return self.adapters.state_dict(prefix="adapters.")

    def load_checkpoint_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load adapters saved by :meth:`checkpoint_state_dict`; mismatches raise one-line ConfigErrors."""
        own = self.checkpoint_state_dict()
        if set(state) != set(own):
            missing = sorted(set(own) - set(state))
            extra = sorted(set(state) - set(own))
            raise ConfigError(
                f"checkpoint does not fit this crackclip model (layers {list(self.layers)}): "
                f"missing {missing[:3] or 'none'}, unexpected {extra[:3] or 'none'}; "
                "build the backbone with the parameters it was trained with"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ConfigError(
                    f"checkpoint entry {k} has shape {tuple(v.shape)}, this model needs {tuple(own[k].shape)}; "
                    f"was it trained with another 'model' than {self.spec.model!r}?"
                )
        if self.adapters is not None:
            self.adapters.load_state_dict({k[len("adapters."):]: v for k, v in state.items()})

    # -- text -------------------------------------------------------------------------------
    def prepare_text(self, train: bool = False) -> torch.Tensor:
        """Encode the prompt set (once) and return the ``[D, 2]`` text matrix on the model's device.

        ``train=True``: the matrix of ``train_prompts`` (the same as ``prompts`` unless set).
        """
        name = "train_text_features" if train else "text_features"
        current = getattr(self, name)
        device = self.clip.visual.conv1.weight.device
        if current.numel() == 0 or current.device != device:
            sentences = self._train_sentences if train else self._sentences
            current = text_matrix(self.clip, self._tokenizer, sentences, self.weights_fingerprint).to(device)
            setattr(self, name, current)
        return current

    # -- image ------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        s = self.fixed_input_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (s, s):
            raise ConfigError(
                f"crackclip expects a [B,3,{s},{s}] batch (its fixed_input_size), got {list(x.shape)}; "
                "resize images to image_size"
            )

    @torch.no_grad()
    def encode_stages(self, x: torch.Tensor) -> torch.Tensor:
        """Frozen stage tokens ``[n_stages, B, n_patches, width]`` (class token dropped)."""
        self._check_input(x)
        dtype = self.clip.visual.conv1.weight.dtype
        out = self.clip.visual.forward_intermediates(
            x.to(dtype),
            indices=[i - 1 for i in self.layers],
            stop_early=True,
            intermediates_only=True,
            output_fmt="NLC",
        )
        return torch.stack(out["image_intermediates"], dim=0)

    def head(self, stages: torch.Tensor, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Stage tokens → per-stage crack logits at ``size`` and the fused map (float32).

        In training mode the text matrix of ``train_prompts`` is used, else that of ``prompts``.
        """
        text = self.prepare_text(train=self.training)
        n, b = stages.shape[:2]
        gh, gw = self.grid
        maps: dict[str, torch.Tensor] = {}
        probs = []
        for i in range(n):
            tok = stages[i]
            if self.adapters is not None:
                feat = self.adapters[i](tok.to(self.adapters[i].weight.dtype))
            else:
                visual = self.clip.visual
                feat = visual.ln_post(tok) @ visual.proj
            feat = feat / feat.norm(dim=-1, keepdim=True)
            logits = self.logit_scale * (feat @ text.to(feat.dtype))  # [B, L, 2]: normal, crack
            d = (logits[..., 1] - logits[..., 0]).reshape(b, 1, gh, gw)
            d = F.interpolate(d.float(), size=size, mode="bilinear", align_corners=True)
            maps[self.stage_names[i]] = d
            probs.append(torch.sigmoid(d))
        fused = torch.stack(probs, dim=0).mean(dim=0)
        maps["out"] = torch.logit(fused, eps=1e-6)
        return maps

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.encode_stages(x), tuple(x.shape[-2:]))

    def forward_train(self, x: torch.Tensor, keys: Sequence[str | None] | None) -> dict[str, torch.Tensor]:
        """Like :meth:`forward`, reusing cached stage tokens of images with a key.

        ``keys[i]`` identifies an un-augmented training image (``None``: augmented,
        always recomputed). Keyed images always go through the cache's half
        precision, so an image gives the same output in every epoch.
        """
        if self.token_cache is None or keys is None:
            return self.forward(x)
        self._check_input(x)
        if len(keys) != x.shape[0]:
            raise ValueError(f"forward_train: {len(keys)} keys for a batch of {x.shape[0]}")
        cache = self.token_cache
        dtype = self.clip.visual.conv1.weight.dtype
        tokens: list[torch.Tensor | None] = [cache.get(k) if k is not None else None for k in keys]
        todo = [i for i, t in enumerate(tokens) if t is None]
        if todo:
            fresh = self.encode_stages(x[todo])
            for j, i in enumerate(todo):
                t = fresh[:, j]
                key = keys[i]
                if key is not None:
                    cache.put(key, t)
                    t = t.to(cache.dtype)
                tokens[i] = t
        stages = torch.stack([t.to(device=x.device, dtype=dtype) for t in tokens if t is not None], dim=1)
        return self.head(stages, tuple(x.shape[-2:]))

    def extra_repr(self) -> str:
        s = self.spec
        return (
            f"model={s.model!r}, image_size={s.image_size}, layers={list(self.layers)}, "
            f"activation={s.activation!r}, prompts={s.prompts!r}, zeroshot={s.zeroshot}"
        )


# -- building ----------------------------------------------------------------------------------
def build_crackclip(spec: BuildSpec) -> CrackCLIP:
    """Validate ``spec``, build the frozen open_clip model, load weights, encode nothing yet."""
    import open_clip

    name = _resolve_model_name(spec.model)
    cfg = open_clip.get_model_config(name)
    vision, text_cfg = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision or isinstance(vision.get("layers"), (list, tuple)):
        raise ConfigError(f"crackclip needs an open_clip ViT model; {spec.model!r} is not one (try ViT-L-14-336)")
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg:
        raise ConfigError(
            f"crackclip supports CLIP text towers only; {spec.model!r} uses a Hugging Face text model"
        )
    n_blocks = int(vision["layers"])
    patch = int(vision["patch_size"])
    _check_layers(spec.layers, n_blocks, spec.model)
    if spec.image_size < patch:
        raise ConfigError(f"crackclip: image_size {spec.image_size} is smaller than {spec.model}'s patch size {patch}")
    # A size that is not a multiple of the patch size works as in open_clip: the patch grid is
    # image_size // patch and the last image_size % patch rows/columns are not seen (ViT-B-16 at 518).
    sources = [s for s, on in (("weights", spec.weights), ("pretrained", spec.pretrained),
                               ("random_init", spec.random_init)) if on]
    if not sources:
        raise ConfigError(W.weights_help(spec.model))
    if len(sources) > 1:
        raise ConfigError(f"crackclip: set only one of weights, pretrained, random_init (got {', '.join(sources)})")

    # prompts first: a typo fails before the (slow) model build
    sentences = _sentences(spec.prompts, spec.prompt_object)
    train_sentences = None if spec.train_prompts is None else _sentences(spec.train_prompts, spec.prompt_object)

    # Random towers are drawn from a fixed seed (without touching the caller's RNG), so that a
    # random_init model rebuilt later (prediction from a checkpoint, disk token cache) is the same.
    with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        clip = open_clip.create_model(
            name,
            pretrained=None,
            force_image_size=spec.image_size,
            quick_gelu=spec.activation == "quick_gelu",
            pretrained_image=False,
            pretrained_text=False,
            device="cpu",
        )
    if spec.weights:
        W.load_into(clip, W.read_state_dict(spec.weights), spec.weights, spec.model)
    elif spec.pretrained:
        path = _download_tag(name, spec.pretrained)
        W.load_into(clip, W.read_state_dict(path), f"{name}/{spec.pretrained}", spec.model)
    else:
        msg = (
            f"crackclip: {spec.model} has RANDOM weights (random_init: true); its maps and every accuracy "
            "number computed from them are meaningless; use this for tests and demos only"
        )
        warnings.warn(msg, stacklevel=3)
        print(f"crackseg: WARNING: {msg}", file=sys.stderr)

    tokenizer = open_clip.get_tokenizer(name)
    model = CrackCLIP(clip, tokenizer, sentences, spec, train_sentences)
    if spec.random_init:
        # read by the pipeline: metrics.json notes and a † in every table this model feeds
        model.placeholder = "random-init CLIP: not a pretrained result"
    return model


def _sentences(prompts: str, prompt_object: str | None) -> dict[str, list[str]]:
    import crackseg

    params = {} if prompt_object is None else {"object": prompt_object}
    sentences = crackseg.create_prompt_set(prompts, **params).sentences()
    for cls in ("normal", "crack"):
        if not sentences.get(cls):
            raise ConfigError(f"prompt set {prompts!r} has no {cls!r} sentences")
    return sentences


def _resolve_model_name(model: str) -> str:
    """A built-in open_clip name, or a JSON model config file (registered with open_clip)."""
    import open_clip

    if model.endswith(".json"):
        p = Path(model).expanduser()
        if not p.is_file():
            raise ConfigError(f"crackclip: model config file {model} not found")
        open_clip.add_model_config(p)
        return p.stem
    if open_clip.get_model_config(model) is None:
        import difflib

        names = [n for n in open_clip.list_models() if n.startswith("ViT")]
        close = difflib.get_close_matches(model, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"crackclip: unknown open_clip model {model!r}{hint} (e.g. ViT-L-14-336, ViT-B-16; "
            "or a path to an open_clip model config .json)"
        )
    return model


def _check_layers(layers: Sequence[int], n_blocks: int, model: str) -> None:
    if not layers:
        raise ConfigError("crackclip: 'layers' is empty; give 1-based block numbers such as [6, 12, 18, 24]")
    bad = [i for i in layers if not 1 <= i <= n_blocks]
    if bad:
        raise ConfigError(f"crackclip: layers {bad} out of range; {model} has blocks 1..{n_blocks}")
    if list(layers) != sorted(set(layers)):
        raise ConfigError(f"crackclip: layers {list(layers)} must be strictly increasing block numbers")


def _download_tag(name: str, tag: str) -> str:
    import open_clip
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cfg = get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"crackclip: unknown open_clip pretrained tag {tag!r} for {name} "
            f"(available: {', '.join(tags) or 'none'}); for a local file use 'weights'"
        )
    try:
        return download_pretrained(cfg)
    except Exception as exc:  # noqa: BLE001 - offline machines land here
        raise ConfigError(
            f"crackclip: could not download {name}/{tag} ({W._short(exc)}); "
            "download it elsewhere and set 'weights' to the file"
        ) from None


@contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's 'initialized randomly' log line (we load weights ourselves)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _weights_fingerprint(clip: nn.Module, spec: BuildSpec) -> str:
    """A digest of the architecture, activation and a sample of the frozen weights."""
    h = hashlib.sha1(f"{spec.model}|{spec.image_size}|{spec.activation}".encode())
    visual = clip.visual
    probes: list[torch.Tensor] = [visual.conv1.weight, visual.positional_embedding]
    probes += list(visual.transformer.resblocks[-1].parameters())
    probes += [p for n, p in clip.named_parameters() if n.startswith(("ln_final", "text_projection"))]
    for t in probes:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def trainable_parameter_count(model_cfg: dict[str, Any], n_stages: int) -> int:
    """Adapter parameters of a CrackCLIP head for an open_clip model config (no model built)."""
    width = int(model_cfg["vision_cfg"]["width"])
    embed = int(model_cfg["embed_dim"])
    return n_stages * (width * embed + embed)
