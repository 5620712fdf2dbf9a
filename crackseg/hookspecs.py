"""The hooks a crackseg plugin can implement.

A plugin is a module (or object) with functions decorated by
``crackseg.hookimpl`` whose names are the hooks below. Each ``register_*``
hook receives a ``register`` callable; call it once per component::

    register(name, factory, params=MyParams, description="...")

``factory(**params)`` builds the component; ``params`` is a dataclass whose
fields (with defaults and type hints) are the component's configuration
schema — YAML keys and ``--set`` values are validated against it.

CONTRIBUTING.md documents each hook with its exact signature; a test checks
that every hook declared here is documented there.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("crackseg")
hookimpl = pluggy.HookimplMarker("crackseg")

#: the signature of the ``register`` callable handed to ``register_*`` hooks
Register = Callable[..., None]


@hookspec
def register_labelers(register: Register) -> None:
    """Register pseudo-labelers: phase 1, images → pixel pseudo-labels.

    ``factory(**params)`` returns an object implementing
    :class:`crackseg.labeling.Labeler`: ``prepare(train_samples, context)``
    (train or load what it needs, e.g. a patch classifier) and
    ``label(samples, context) -> list[PseudoLabel]`` (a soft map in [0, 1] and a
    binary mask per image).
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Register segmentation backbones: phase 2, image → crack map.

    ``factory(**params)`` returns a ``torch.nn.Module`` mapping a float batch
    ``[B,3,H,W]`` (normalised with its ``input_mean``/``input_std`` attributes,
    ImageNet statistics by default) to crack logits ``[B,1,H,W]`` — or to a
    ``dict`` of named logit maps with the main map under ``"out"`` (deep
    supervision, per-stage maps). Optional extras as keyword arguments of
    ``register``: ``train={...}`` training defaults from the method's paper,
    ``loss="focal+dice"`` its default loss, ``loss_weights={...}`` weights of
    named outputs.
    """


@hookspec
def register_prompt_sets(register: Register) -> None:
    """Register text prompt sets for vision-language backbones.

    ``factory(**params)`` returns an object with
    ``sentences() -> {"normal": [...], "crack": [...]}`` (complete sentences).
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register losses usable by any backbone.

    ``factory(**params)`` returns a callable
    ``loss(logits, target) -> scalar tensor`` where ``logits`` and ``target``
    are ``[B,1,H,W]``; ``target`` is float in {0, 1}. Losses are combined in
    configs as ``"focal+dice+0.5*edge"``.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset readers.

    ``factory(**params)`` returns a :class:`crackseg.data.CrackDataset`:
    ``splits()`` and ``samples(split) -> list[Sample]``. A dataset factory
    should accept ``root`` when it reads from disk.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``crackseg`` click group ``cli``.

    Use ``@cli.command()`` as with any click group. Raise
    :class:`crackseg.errors.CracksegError` for a user error: the CLI prints it
    in one line and exits with status 2.
    """
