"""``crackseg tune``'s set-up: its options, every check before any work, the :class:`TuneSetup` and its report.

:func:`tune_setup` turns the command's :class:`TuneOptions` into a
:class:`crackseg.apps.tune.TuneSetup` (optuna installed, counts, the labeler's fixed parameters and
search space, the data and the annotated images), :func:`tune_command` writes the command line that
continues the study (it heads the written layer, :func:`write_layer`) and :func:`result_text` is what the
command prints.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crackseg.apps import tune as tuning
from crackseg.base.distributed import resolve_device
from crackseg.base.errors import ConfigError
from crackseg.base.io import write_text
from crackseg.base.locks import hold
from crackseg.base.storage import storage_errors
from crackseg.config.assembly import labeler_layers
from crackseg.config.run_config import PROTOCOLS, resolve_data_section, resolve_section
from crackseg.config.search_space import DeclarationError, TuneParam, build_space, parse_param_options
from crackseg.data.loading import load_samples, train_samples
from crackseg.plugins.blame import plugin_error
from crackseg.plugins.factory import get_entry


@dataclass
class TuneOptions:
    """The options of ``crackseg tune`` (the names of its click parameters; see ``crackseg tune --help``)."""

    labeler: str
    data: str
    out: str
    split: str | None = None
    annotated: int = 10
    trials: int = 30
    study: str | None = None
    study_name: str | None = None
    params: tuple[str, ...] = ()
    objective: str = "binary"
    protocol: str = PROTOCOLS[0]
    prune_every: int | None = None
    no_prune: bool = False
    tolerance: float | None = None
    timeout: float | None = None
    shared_dir: str | None = None
    device: str = "auto"
    seed: int = 0
    config_file: str | None = None
    sets: tuple[str, ...] = ()
    wait: bool = False


def check_counts(opts: TuneOptions) -> None:
    """``--trials``, ``--annotated`` and ``--prune-every`` are at least 1, ``--timeout`` above 0 (a one-line
    :class:`ConfigError` otherwise; the CLI's option types check the same)."""
    if opts.prune_every is not None and opts.prune_every < 1:
        raise ConfigError(f"--prune-every {opts.prune_every}: give at least 1 (leave it out for a fifth of the images)")
    if opts.timeout is not None and not opts.timeout > 0:  # NaN too
        raise ConfigError(f"--timeout {opts.timeout}: give a number of seconds above 0")
    if opts.trials < 1:
        raise ConfigError(f"--trials {opts.trials}: give at least 1")
    if opts.annotated < 1:
        raise ConfigError(f"--annotated {opts.annotated}: tune needs at least one annotated image (a mask); "
                          f"e.g. --annotated 10")


def search_space(opts: TuneOptions, params_cls: type | None, fixed: dict[str, Any],
                 quiet: bool) -> dict[str, TuneParam]:
    """The labeler's search space (``params_cls``: its params dataclass): declared ranges and ``--param``,
    less ``fixed`` and what retrains it.

    A parameter that changes what the labeler trains is searched only when ``--param`` names it.
    """
    labeler = opts.labeler
    owner = f"labeler {labeler!r}"
    named = parse_param_options(opts.params)
    try:
        space = build_space(params_cls, named, set(fixed), owner)
    except DeclarationError as exc:
        raise plugin_error("labelers", labeler, f"its tune ranges: {exc}") from None
    for name, artefacts in tuning.artefact_changing(labeler, fixed, space).items():
        if name not in named:
            del space[name]
            tuning.log(f"tune: not searching {name!r}: it changes what the labeler trains ({', '.join(artefacts)}), "
                       f"so each trial would train again; name it with --param {name} to search it anyway", quiet)
    if not space:
        raise ConfigError(f"{owner} has nothing to tune: its params declare no tune range "
                          f"(field(metadata={{'tune': (lo, hi)}})) that is not fixed by --set/--config; "
                          f"name parameters with --param NAME=LO:HI")
    return space


def tune_device(requested: str) -> str:
    """``--device``: ``cpu`` needs no torch (a labeler may not use it); ``auto`` without torch is the CPU."""
    if requested == "cpu":
        return "cpu"
    try:
        return resolve_device(requested)
    except ModuleNotFoundError:
        if requested == "auto":
            return "cpu"
        raise


def tune_setup(opts: TuneOptions, quiet: bool = False) -> tuning.TuneSetup:
    """The :class:`~crackseg.apps.tune.TuneSetup` of the ``tune`` command's options (every check before any work).

    Checks that optuna is installed, the counts, the fixed parameters (``--config``/``--set``), the
    search space, the data and its annotated images; then logs what the study searches.
    """
    tuning.require_optuna()
    check_counts(opts)
    labeler = opts.labeler
    raw = labeler_layers("tune", labeler, opts.data, opts.config_file, opts.sets)
    resolve_section("labelers", raw["labeler"], "labeler")  # checks the fixed parameters
    fixed = {k: v for k, v in raw["labeler"].items() if k != "name"}
    entry = get_entry("labelers", labeler)
    space = search_space(opts, entry.params, fixed, quiet)
    data_section = resolve_data_section(raw["data"])
    split = opts.split or data_section["train_split"]
    samples = load_samples(data_section, split)
    chosen = tuning.annotated_samples(samples, opts.annotated,
                                      f"split {split!r} of dataset {data_section['name']!r}")
    train = train_samples(data_section)
    study_path = Path(opts.study) if opts.study else Path(f"{opts.out}.study.db")
    setup = tuning.TuneSetup(
        name=labeler, fixed=fixed, space=space, data=data_section, train=train, annotated=chosen,
        study_path=study_path, study_name=opts.study_name or f"tune-{labeler}",
        shared_dir=Path(opts.shared_dir) if opts.shared_dir else study_path.with_name(study_path.stem + ".shared"),
        objective=opts.objective, protocol=opts.protocol,
        chunk=opts.prune_every or max(1, -(-len(chosen) // 5)), seed=opts.seed,
        device=tune_device(opts.device), prune=not opts.no_prune, defaults=entry.param_defaults(),
    )
    if opts.tolerance is not None:
        setup.tolerance = opts.tolerance
    tuning.log(f"tune: {labeler} on {len(setup.annotated)} annotated images; searching "
               + "; ".join(p.describe() for p in setup.space.values()), quiet)
    return setup


def tune_command(opts: TuneOptions) -> str:
    """The ``crackseg tune`` command line that reproduces (continues) this study."""
    args = ["crackseg", "tune", "--labeler", opts.labeler, "--data", opts.data]
    if opts.split:
        args += ["--split", opts.split]
    args += ["--annotated", str(opts.annotated), "--trials", str(opts.trials), "--out", opts.out]
    for flag, value in (("--study", opts.study), ("--study-name", opts.study_name), ("--shared-dir", opts.shared_dir),
                        ("--config", opts.config_file)):
        if value:
            args += [flag, value]
    for p in opts.params:
        args += ["--param", p]
    if opts.objective != "binary":
        args += ["--objective", opts.objective]
    if opts.protocol != PROTOCOLS[0]:
        args += ["--protocol", opts.protocol]
    if opts.prune_every:
        args += ["--prune-every", str(opts.prune_every)]
    if opts.no_prune:
        args.append("--no-prune")
    if opts.tolerance is not None:
        args += ["--tolerance", f"{opts.tolerance:g}"]
    if opts.device != "auto":
        args += ["--device", opts.device]
    if opts.seed:
        args += ["--seed", str(opts.seed)]
    for s in opts.sets:
        args += ["--set", s]
    return shlex.join(args)


def run_study(setup: tuning.TuneSetup, opts: TuneOptions, quiet: bool = False) -> tuning.TuneResult:
    """Run (or continue) the study up to ``--trials`` finished trials, starting none after ``--timeout``.

    The study file is held meanwhile: another ``tune`` on it is refused, naming this one (``--wait``: queues).
    """
    with storage_errors(setup.study_path):  # SQLite's "database or disk is full": one line naming the study
        with hold(setup.study_path, "a tuning study", wait=opts.wait, other="give this one another --study"):
            return tuning.run_study(setup, opts.trials, timeout=opts.timeout, quiet=quiet)


def write_layer(setup: tuning.TuneSetup, result: tuning.TuneResult, opts: TuneOptions) -> None:
    """Write ``--out``: the config layer of the best parameters, headed by :func:`tune_command`."""
    write_text(opts.out, tuning.layer_text(setup, result, tune_command(opts), opts.out))


def result_text(setup: tuning.TuneSetup, result: tuning.TuneResult) -> tuple[str, str]:
    """What ``crackseg tune`` prints about a finished study (trials, best score and parameters, the layer), and
    its warning, ``""`` when none (:func:`crackseg.apps.tune.nothing_found`)."""
    default = f"{result.default_value:.4f}" if result.default_value is not None else "not measured"
    return "\n".join([
        f"{result.finished} trials in {setup.study_path} ({result.ran} run now, {result.pruned} pruned); "
        f"best pseudo-label F {result.best_value:.4f} (trial {result.best_trial}), defaults {default}",
        "best: " + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items()),
        tuning.layer_summary(setup, result),
    ]), tuning.nothing_found(setup, result)
