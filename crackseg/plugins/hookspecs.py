"""The hooks a crackseg plugin can implement, each typed and documented where it is declared.

A plugin is a module (or object) with functions decorated by ``crackseg.hookimpl``
whose names are the hooks below, declared in the order the pipeline uses what they register
(datasets, labelers, backbones and what trains them, commands). ``CRACKSEG_TRACE_PLUGINS=1``
prints every hook call on stderr. Each ``register_*`` hook receives a
:class:`Register` callable; call it once per component::

    register(name, factory, params=MyParams, description="...", **extras)

``factory(**params)`` builds the component; ``params`` is a dataclass whose typed
fields with defaults are the component's configuration schema (YAML keys and
``--set`` values are validated against it). ``extras`` are the keyword arguments
listed under each hook; :data:`crackseg.plugins.registry.EXTRAS` holds the same
list for the code, and CONTRIBUTING.md documents every hook (a test checks both).

Components may also carry two attributes the pipeline reads without knowing who
set them (on the object the factory returns):

``note``
    a short remark copied into ``metrics.json`` and every table the run feeds,
    e.g. ``"synthetic data"``;
``placeholder``
    non-empty when the component's results are placeholders, not findings (random
    weights, say): the text says why; tables mark such rows with †.

Both are read after the labeler's ``prepare``, so a labeler may set its ``note`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import click

hookspec = pluggy.HookspecMarker("crackseg")
hookimpl = pluggy.HookimplMarker("crackseg")


class Register(Protocol):
    """The ``register`` callable handed to every ``register_*`` hook."""

    def __call__(self, name: str, factory: Callable[..., Any], params: type | None = None,
                 description: str = "", override: bool = False, **extras: Any) -> None:
        """Add one component: its name, factory, parameter dataclass, one-line description, extras.

        ``override=True`` replaces a component another plugin registered under ``name`` (said in
        ``crackseg plugins``); without it a taken name is refused.
        """


# --- data: where the images (and their masks and weak labels) come from --------------------------------------------
@hookspec
def register_datasets(register: Register) -> None:
    """Register dataset readers.

    ``factory(**params)`` returns a :class:`crackseg.CrackDataset`: ``splits()``
    and ``samples(split) -> list[Sample]``. A dataset that reads from disk takes the
    folder as a parameter (``root`` by convention).

    Extras: ``opens={"param": "root"}`` this entry reads a plain folder: ``--data PATH``
    builds it with ``root=PATH``; ``train={...}`` (or a function of the validated
    params returning one) suggests training settings for its images, e.g. their size;
    ``demo=True`` this is demo data: labelers use their ``demo`` settings on it;
    ``default=True`` the default dataset.
    """


# --- phase 1: pseudo-labels from weak labels -----------------------------------------------------------------------
@hookspec
def register_labelers(register: Register) -> None:
    """Register pseudo-labelers: phase 1, images → pixel pseudo-labels.

    ``factory(**params)`` returns an object implementing
    :class:`crackseg.Labeler`: ``prepare(train_samples, context)`` (train or
    load what it needs), ``label(samples, context) -> list[PseudoLabel]`` (a soft map
    in [0, 1] and a binary mask per image) and ``fingerprint() -> str``. A labeler that
    trains a model of its own declares it with ``artefacts()`` (see
    :class:`crackseg.Labeler`); its settings live in the labeler's own params.

    Extras: ``demo={...}`` settings for demo data (keys of its params, e.g. a small
    classifier): used when the dataset is registered with ``demo=True``, under the user's own
    settings, so every labeler finishes in minutes on a CPU there; ``default=True`` offers the
    labeler as the default when a run names none.
    """


# --- phase 2: what is trained, with what, and how ------------------------------------------------------------------
@hookspec
def register_backbones(register: Register) -> None:
    """Register segmentation backbones: phase 2, image → crack map.

    ``factory(**params)`` returns a ``torch.nn.Module`` mapping a float batch
    ``[B,3,H,W]`` to crack logits ``[B,1,H,W]``, or to a ``dict`` of named logit maps
    with the main map under ``"out"``. Optional module attributes are listed in
    ``crackseg.as_outputs`` and CONTRIBUTING.md.

    Extras: ``train={...}`` training defaults from the method's paper (keys of
    ``crackseg.TrainConfig``); ``loss="a+0.5*b"`` its default loss;
    ``prompt_param="prompts"`` the parameter that takes a prompt set (what ``--prompts``
    and a grid's ``prompts`` axis set); ``input_size_param="image_size"`` the parameter that
    fixes the model's input size (a run trains at that size: ``train.image_size`` shows it);
    ``default=True`` the default backbone. The weights
    of named outputs are the model's ``loss_weights`` attribute (a run's ``loss_weights``
    setting replaces them).
    """

@hookspec
def register_prompt_sets(register: Register) -> None:
    """Register text prompt sets for vision-language backbones.

    ``factory(**params)`` returns an object with
    ``sentences() -> {"normal": [...], "crack": [...]}`` (complete sentences).

    Extras: ``opens={"param": "path", "suffixes": [".yaml"]}`` this entry reads prompt
    sets from files with those suffixes: ``--prompts my.yaml`` builds it with
    ``path="my.yaml"``.
    """

@hookspec
def register_losses(register: Register) -> None:
    """Register losses usable by any backbone.

    ``factory(**params)`` returns a callable ``loss(logits, target) -> scalar tensor``
    where ``logits`` and ``target`` are ``[B,1,H,W]``; ``target`` is float in {0, 1}.
    Losses are combined in configs as ``"focal+dice+0.5*edge"``.

    Extras: ``default=True`` makes the loss a term of the default loss (the sum of
    every such loss) for backbones that declare none.
    """

@hookspec
def register_trainers(register: Register) -> None:
    """Register training methods: how phase 2 trains a backbone on the pseudo-labels.

    ``factory(**params)`` returns an object implementing :class:`crackseg.Trainer`:
    ``fit(job) -> TrainResult``, where ``job`` (:class:`crackseg.TrainJob`) holds the
    model, the training samples with their pseudo-labels (binary masks and soft maps), the loss,
    the training settings and the :class:`crackseg.Engine` that places the model,
    distributes it, checkpoints, resumes, keeps time budgets and logs.

    Extras: ``train={...}`` training settings of the method's recipe (keys of
    ``crackseg.TrainConfig``; they win over the backbone's); ``default=True`` the trainer a
    run uses when it names none.
    """

@hookspec
def register_loggers(register: Register) -> None:
    """Register training loggers: where each epoch's numbers go (a CSV file, TensorBoard, ...).

    ``factory(**params)`` returns an object with ``start(run_dir, config, history)`` (the
    run folder, the resolved config as plain data, the rows of the epochs done before a
    resume), ``log_epoch(row)`` (a mapping of the epoch's numbers: ``epoch``, ``loss``,
    ``step``, ...) and ``close()``; only rank 0 logs.

    Extras: ``default=True`` the logger is used when ``train.loggers`` names none.
    """


# --- the command line ----------------------------------------------------------------------------------------------
@hookspec
def register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``crackseg`` click group ``cli``.

    Use ``@cli.command()`` as with any click group. Raise
    :class:`crackseg.CracksegError` for a user error: the CLI prints it in one
    line and exits with status 2.
    """
