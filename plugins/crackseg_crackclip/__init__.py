"""CrackCLIP (Liang et al., Entropy 2025): the ``crackclip`` backbones and the ``crack``/``generic`` prompt sets.

Registers

* backbones ``crackclip`` (frozen open_clip ViT + trainable linear adapter per
  stage, the paper's model) and ``crackclip-zeroshot`` (the model's own
  ``ln_post`` + ``proj`` instead of adapters; training-free baseline);
* prompt sets ``crack`` (8 normal / 14 crack states × 35 templates) and
  ``generic`` (7 / 5 states × 35 templates, APRIL-GAN's lists), and
  ``prompt-file``, which reads a user's YAML prompt file (``--prompts my.yaml``).

This module stays light: torch and open_clip are imported by the factories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import crackseg

#: packages this plugin needs (its components are listed as unavailable without them)
CRACKSEG_REQUIRES = ("torch", "open_clip")
CRACKSEG_INSTALL_HINT = "pip install 'crackseg[clip]'"


# -- prompt sets ---------------------------------------------------------------------------
@dataclass
class PromptParams:
    """Parameters of a built-in prompt set."""

    #: the object word put into every state, e.g. "pavement", "concrete wall"
    object: str = "pavement"


@dataclass
class PromptFileParams:
    """A prompt set read from a YAML file (keys normal, crack, optional templates, object)."""

    #: the YAML file
    path: str = field(default="", metadata={"path": "file"})
    #: overrides the file's object word
    object: str | None = None


def _prompt_factory(name: str) -> Any:
    def build(object: str) -> Any:  # noqa: A002 - the config key is "object"
        from . import prompt_lists as L
        from .prompts import PromptSet

        normal, crack = {
            "crack": (L.CRACK_NORMAL, L.CRACK_CRACK),
            "generic": (L.GENERIC_NORMAL, L.GENERIC_CRACK),
        }[name]
        return PromptSet(name=name, normal=normal, crack=crack, object=object)

    return build


@crackseg.hookimpl
def register_prompt_sets(register: Any) -> None:
    register(
        "crack",
        _prompt_factory("crack"),
        params=PromptParams,
        description="CrackCLIP crack prompts: 8 normal / 14 crack states x 35 templates (280 / 490 sentences)",
    )
    register(
        "generic",
        _prompt_factory("generic"),
        params=PromptParams,
        description="generic defect prompts of APRIL-GAN (paper Fig. 5 'Normal'): 7 / 5 states x 35 templates",
    )
    register(
        "prompt-file",
        _build_prompt_file,
        params=PromptFileParams,
        description="a prompt set from a YAML file: --prompts my.yaml (keys normal, crack, templates, object)",
        opens={"param": "path", "suffixes": [".yaml", ".yml"]},
    )


def _build_prompt_file(path: str, object: str | None) -> Any:  # noqa: A002
    from .prompts import load_prompt_file

    return load_prompt_file(path, object)


# -- backbones --------------------------------------------------------------------------------
@dataclass
class CrackCLIPParams:
    """Parameters of the crackclip backbones (each field is a config key)."""

    #: open_clip ViT name (or path to an open_clip model config .json)
    model: str = "ViT-L-14-336"
    #: square input size; position embeddings are resized (bicubic, antialias) to it
    image_size: int = 518
    #: 1-based transformer blocks whose outputs (before ln_post/proj) feed the stages
    layers: list[int] = field(default_factory=lambda: [6, 12, 18, 24])
    #: local CLIP weights: OpenAI .pt (TorchScript or state dict), open_clip checkpoint, or HF CLIP folder
    weights: str | None = field(default=None, metadata={"path": "file"})
    #: open_clip pretrained tag, e.g. "openai" (downloads; for online machines)
    pretrained: str | None = None
    #: random frozen towers (tests/demos only: the maps are meaningless)
    random_init: bool = False
    #: "gelu" = the authors' run (exact GELU with OpenAI weights); "quick_gelu" = stock CLIP
    activation: Literal["gelu", "quick_gelu"] = "gelu"
    #: prompt set name or YAML path
    prompts: str = "crack"
    #: prompts used while training (null: the same as prompts); the authors' release trained
    #: with "generic" and tested with "crack"
    train_prompts: str | None = None
    #: object word for the prompt set (null: the set's own default, "pavement")
    prompt_object: str | None = None
    #: similarity scale (the authors' 100)
    logit_scale: float = 100.0
    #: cache frozen stage tokens of un-augmented training images
    token_cache: Literal["memory", "disk", "off"] = "memory"
    #: folder of the disk cache (default ~/.cache/crackseg/tokens)
    token_cache_dir: str | None = None
    #: bound of the cache in GiB (ViT-L-14-336 at 518, 4 stages: ~10.7 MiB per image)
    token_cache_max_gb: float = 8.0


_TRAIN = {
    "optimizer": "adam",
    "lr": 1e-3,
    "betas": [0.5, 0.999],
    "epochs": 3,
    "batch_size": 8,
    "weight_decay": 0.0,
    "image_size": 518,
    "augment": [],
    "mosaic_p": 0.2,
}


def _factory(zeroshot: bool) -> Any:
    def build(**params: Any) -> Any:
        from .model import BuildSpec, build_crackclip

        params = dict(params)
        params["layers"] = tuple(params["layers"])
        return build_crackclip(BuildSpec(zeroshot=zeroshot, **params))

    return build


@crackseg.hookimpl
def register_backbones(register: Any) -> None:
    register(
        "crackclip",
        _factory(False),
        params=CrackCLIPParams,
        description="CrackCLIP: frozen CLIP ViT + linear adapters at 4 stages vs. text prompts (paper model)",
        train=dict(_TRAIN),
        loss="focal+dice",
        prompt_param="prompts",
        input_size_param="image_size",
    )
    register(
        "crackclip-zeroshot",
        _factory(True),
        params=CrackCLIPParams,
        description="training-free CLIP baseline: the model's own ln_post+proj on stage tokens vs. text prompts",
        train=dict(_TRAIN),  # nothing trains: the trainer must skip models without trainable parameters
        loss="focal+dice",
        prompt_param="prompts",
        input_size_param="image_size",
    )
