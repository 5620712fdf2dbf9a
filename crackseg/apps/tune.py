"""``crackseg tune``: calibrate a labeler's parameters on a few annotated images, with Optuna.

A *trial* builds the labeler with candidate parameters (drawn from the search space that its
params dataclass declares, see :mod:`crackseg.config.search_space`), labels the annotated images and
scores the labels against their masks; the study keeps the parameters with the best score.

The score (``objective``)
    ``binary`` (default): the F of the binary pseudo-label masks, pooled over the annotated
    images: what ``crackseg run``'s default trainer trains on (``<stem>.png``). Computed with
    :class:`~crackseg.evaluation.metrics.MetricAccumulator` on the masks as 0/255 maps, where ODS = that F.
    ``soft``: the ODS of the soft maps (the project's "pseudo-label ODS"): threshold-free, what a
    trainer that reads the soft maps (e.g. one that splits them by confidence) sees. Parameters
    that only move the binary threshold do not change it.

Costs
    ``prepare`` (e.g. training a model the labeler needs) runs once per tune: a parameter that
    changes what the labeler trains (its ``artefacts()`` settings) is not searched unless named
    with ``--param``, and the trained artefacts live in a shared folder keyed by their settings,
    the data and the seed (:func:`crackseg.labels.preparation.stage_dirs`), so every trial and every later
    invocation loads them instead of training again.

Pruning
    After every ``chunk`` images a trial reports the score so far (step = images labelled);
    a :class:`optuna.pruners.MedianPruner` stops a trial that is below the median of earlier
    trials at the same step. The first trial of a new study is the labeler's defaults.

Simplifying
    A handful of images cannot support every change a search makes: a parameter the best trial
    moved by chance (or one that does nothing beside the other values, such as a threshold that
    another value switches off) would travel to other photos as noise. After the study, each searched
    parameter whose best value differs from the labeler's default is set back to the default in
    turn (declaration order) and the labeler scored on all annotated images; the default stays
    when the score is within ``tolerance`` of the study's best and not below the defaults' score.
    The layer holds the result (every searched value, the defaults kept included) and its header
    says which changes were kept and the layer's own score. ``tolerance < 0`` keeps the best
    trial as it is. The outcome is kept in the study, so a rerun that adds no trial does not
    repeat it.

Resuming
    The study lives in a SQLite file. ``trials`` is the number of finished (complete or
    pruned) trials the study should hold: rerunning the same command continues an interrupted
    study and runs only the missing trials; a larger ``trials`` adds more. A study remembers what
    its scores depend on (labeler, fixed parameters, data, annotated images, objective, protocol,
    seed) and refuses to continue with other settings. A trial that an interruption stopped
    (Ctrl-C, or kill -9, which leaves it RUNNING) is run again with the same values, and each
    trial draws its candidates from the seed and its place among the finished trials: a study
    continued any number of times ends where an uninterrupted one ends. One ``tune`` at a time
    works on a study file (its lock, :func:`crackseg.base.locks.hold`), and a ``--study`` file
    that holds another program's SQLite tables is refused untouched.

optuna is imported only here, inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crackseg.base.console import first_line
from crackseg.base.errors import ConfigError, CracksegError, DataError
from crackseg.base.storage import storage_error
from crackseg.config.layers import dump_yaml
from crackseg.config.run_config import RunConfig
from crackseg.config.search_space import TuneParam
from crackseg.data.samples import Sample
from crackseg.evaluation.metrics import MetricAccumulator
from crackseg.labels.contract import LabelContext, Labeler, declared_artefacts
from crackseg.labels.factory import create_labeler
from crackseg.labels.preparation import prepare, stage_dirs
from crackseg.labels.pseudo_labels import label_problem
from crackseg.plugins.blame import blamed, plugin_error

#: what a trial's score measures (see the module docstring)
OBJECTIVES: tuple[str, ...] = ("binary", "soft")
#: the study's user attribute holding what its scores depend on
SIGNATURE_ATTR = "crackseg"
#: the user attribute marking the trial of the labeler's defaults
DEFAULTS_ATTR = "defaults"
#: the study's user attribute caching the simplification of its best trial
SIMPLIFIED_ATTR = "simplified"
#: default ``--tolerance``: a change must gain more than this F on the annotated images to be kept
TOLERANCE = 0.01
INSTALL_HINT = "pip install 'crackseg[tune]'"


@dataclass
class TuneSetup:
    """Everything a study needs; built by the ``tune`` command."""

    #: the labeler's registered name
    name: str
    #: labeler parameters set by ``--config`` / ``--set``: kept as they are, never searched
    fixed: dict[str, Any]
    #: the searched parameters
    space: dict[str, TuneParam]
    #: the resolved ``data:`` section
    data: dict[str, Any]
    #: what ``prepare`` gets: the training split that ``crackseg run`` prepares the labeler on
    train: list[Sample]
    #: images with masks; the score is measured on them
    annotated: list[Sample]
    study_path: Path
    study_name: str
    #: trained artefacts, keyed by their settings (``shared_dir`` of a run)
    shared_dir: Path
    objective: str = "binary"
    protocol: str = "crackclip"
    #: images per intermediate score (pruning step)
    chunk: int = 2
    seed: int = 0
    device: str = "cpu"
    prune: bool = True
    #: the labeler's default parameters (the first trial of a new study)
    defaults: dict[str, Any] = field(default_factory=dict)
    #: a change from a default is kept only when it gains more than this F (< 0: keep the best trial as is)
    tolerance: float = TOLERANCE

    def signature(self) -> dict[str, Any]:
        """What the study's scores depend on (the search space may change between invocations)."""
        return {"labeler": self.name, "fixed": self.fixed, "data": self.data,
                "annotated": [s.stem for s in self.annotated], "objective": self.objective,
                "protocol": self.protocol, "seed": self.seed}


@dataclass
class TuneResult:
    """The study's outcome after this invocation."""

    best_value: float
    #: the best trial's searched parameters
    best_params: dict[str, Any]
    best_trial: int
    complete: int
    pruned: int
    failed: int
    #: trials this invocation ran
    ran: int
    #: the score of the labeler's defaults (None when the study has no such trial)
    default_value: float | None = None
    #: the values the layer holds (the best trial, simplified) and their score on the annotated images
    layer_params: dict[str, Any] = field(default_factory=dict)
    layer_value: float = math.nan
    #: searched parameters whose best value differs from the default, and those set back to it
    changed: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.complete + self.pruned

    @property
    def kept(self) -> list[str]:
        """Searched parameters the layer moves away from the labeler's defaults."""
        return [k for k in self.changed if k not in self.reverted]


def require_optuna() -> Any:
    """The optuna module, or a one-line error saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise CracksegError(f"crackseg tune needs optuna, which is not installed: {INSTALL_HINT}") from None
    return optuna


# -- scoring ---------------------------------------------------------------------------
def pseudo_label_f(acc: MetricAccumulator) -> float:
    """The ODS of what ``acc`` holds (0 when undefined, e.g. no crack predicted or annotated)."""
    ods = float(acc.result().ods)
    return 0.0 if math.isnan(ods) else ods


def score_labeler(labeler: Labeler, samples: Sequence[Sample], masks: dict[str, np.ndarray], context: LabelContext,
                  *, name: str = "", objective: str = "binary", protocol: str = "crackclip", chunk: int = 2,
                  report: Callable[[float, int], None] | None = None) -> float:
    """Label ``samples`` ``chunk`` at a time and return the pseudo-label F against ``masks`` (stem → bool).

    ``report(score_so_far, images_done)`` is called after every chunk but the last (it may raise to
    stop early, e.g. optuna's ``TrialPruned``). ``name`` is the labeler's registered name (errors
    name its plugin).
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r} (choose from {', '.join(OBJECTIVES)})")
    acc = MetricAccumulator(protocol)
    chunk = max(1, chunk)
    for start in range(0, len(samples), chunk):
        part = list(samples[start : start + chunk])
        with blamed("labelers", name, "label()"):
            labels = labeler.label(part, context)
        problem = label_problem(part, labels)
        if problem:
            raise plugin_error("labelers", name, problem)
        for s, lab in zip(part, labels):
            acc.add(s.stem, lab.binary if objective == "binary" else lab.soft, masks[s.stem])
        done = start + len(part)
        if report is not None and done < len(samples):
            report(pseudo_label_f(acc), done)
    return pseudo_label_f(acc)


def annotated_samples(samples: Sequence[Sample], n: int, where: str) -> list[Sample]:
    """The first ``n`` samples that have a mask (all of them when fewer); none is a :class:`DataError`."""
    if n < 1:
        raise ConfigError(f"--annotated {n}: tune needs at least one annotated image (a mask); e.g. --annotated 10")
    out = [s for s in samples if s.has_mask][:n]
    if not out:
        raise DataError(f"{where} has no annotated image (no image with a mask): tune scores the labeler against "
                        f"masks; add masks for a few images (5-20), or choose a split that has them (--split)")
    return out


# -- building labelers -----------------------------------------------------------------
def artefact_changing(name: str, fixed: dict[str, Any], space: dict[str, TuneParam]) -> dict[str, list[str]]:
    """Searched parameters whose values change what the labeler trains → the artefacts they change.

    Found by building the labeler at each end of the range (or with each choice) and comparing
    its ``artefacts()`` settings with those at the fixed/default parameters.
    """
    base = declared_artefacts(create_labeler(name, **fixed))
    out: dict[str, list[str]] = {}
    for p in space.values():
        probes = p.choices if p.kind == "categorical" else (p.low, p.high)
        for value in probes:
            try:
                other = declared_artefacts(create_labeler(name, **{**fixed, p.name: value}))
            except CracksegError:
                continue  # an invalid value: the trial that draws it reports it
            changed = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            if changed:
                out[p.name] = changed
                break
    return out


def artefact_dirs(setup: TuneSetup, section: dict[str, Any], artefacts: dict[str, Any]) -> dict[str, Path]:
    """The artefact folders a run with ``shared_dir = setup.shared_dir`` and this data and seed would use."""
    cfg = RunConfig(seed=setup.seed, shared_dir=str(setup.shared_dir), data=setup.data, labeler=section)
    return stage_dirs(cfg, setup.shared_dir, artefacts)[0]


def prepared_labeler(setup: TuneSetup, values: dict[str, Any], quiet: bool = True) -> tuple[Labeler, LabelContext]:
    """The labeler with ``values`` over the fixed parameters, prepared (its artefacts trained once, then loaded)."""
    params = {**setup.fixed, **values}
    labeler = create_labeler(setup.name, **params)
    dirs = artefact_dirs(setup, {"name": setup.name, **params}, declared_artefacts(labeler))
    ctx = prepare(labeler, setup.train, name=setup.name, device=setup.device, work_dir=setup.shared_dir / "labeler",
                  artefact_dirs=dirs, seed=setup.seed, quiet=quiet, lock=True)
    return labeler, ctx


def score_values(setup: TuneSetup, values: dict[str, Any], masks: dict[str, np.ndarray], chunk: int,
                 report: Callable[[float, int], None] | None = None) -> float:
    """The pseudo-label F of the labeler with ``values`` over the fixed parameters on the annotated images."""
    labeler, ctx = prepared_labeler(setup, values)
    return score_labeler(labeler, setup.annotated, masks, ctx, name=setup.name, objective=setup.objective,
                         protocol=setup.protocol, chunk=chunk, report=report)


def space_defaults(setup: TuneSetup) -> dict[str, Any]:
    """The labeler's defaults of the searched parameters that lie inside their searched ranges."""
    return {k: setup.defaults[k] for k, p in setup.space.items()
            if k in setup.defaults and p.contains(setup.defaults[k])}


# -- the study ---------------------------------------------------------------------------
def open_study(setup: TuneSetup) -> Any:
    """Create or load the study in ``setup.study_path``; refuse one made with other settings."""
    optuna = require_optuna()
    check_study_file(setup.study_path)
    setup.study_path.parent.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{setup.study_path.resolve()}"
    try:
        study = optuna.load_study(study_name=setup.study_name, storage=storage)
    except KeyError:  # no such study in the file yet
        study = None
    except Exception as exc:  # noqa: BLE001 - a file that is no optuna database
        stored = storage_error(exc, setup.study_path)  # a full disk, a read-only folder: said as such
        if stored is not None:
            raise stored from None
        raise CracksegError(f"{setup.study_path}: cannot open the study database ({first_line(exc, with_type=False)}); "
                            f"pass --study NEW.db") from None
    signature = _plain(setup.signature())
    sampler = _seeded_sampler(optuna, setup.seed)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0) if setup.prune
              else optuna.pruners.NopPruner())
    if study is None:
        study = optuna.create_study(study_name=setup.study_name, storage=storage, direction="maximize",
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr(SIGNATURE_ATTR, signature)
        defaults = space_defaults(setup)
        if len(defaults) == len(setup.space):  # else: not a point of this space
            study.enqueue_trial(defaults, user_attrs={DEFAULTS_ATTR: True})
        return study
    recorded = study.user_attrs.get(SIGNATURE_ATTR)
    if recorded != signature:
        diff = sorted(k for k in set(signature) | set(recorded or {}) if (recorded or {}).get(k) != signature.get(k))
        raise ConfigError(f"study {setup.study_name!r} in {setup.study_path} was run with other settings "
                          f"({', '.join(diff) or 'not by crackseg tune'} differ): rerun it with the same ones, "
                          f"or start a new study with --study NEW.db")
    study.sampler = sampler
    study.pruner = pruner
    _rerun_interrupted(study)
    return study


#: the user attribute of a trial that an interruption (Ctrl-C, kill -9) stopped
INTERRUPTED_ATTR = "interrupted"
#: the user attribute of the trial that reruns an interrupted one (its number)
RERUN_ATTR = "rerun_of"


def _seeded_sampler(optuna: Any, seed: int) -> Any:
    """TPE whose random state is drawn afresh for each trial from ``seed`` and the trial's place among the
    finished ones: a study continued after an interruption draws what an uninterrupted one would."""

    class PerTrialSeeded(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.inner = optuna.samplers.TPESampler(seed=seed)

        def before_trial(self, study: Any, trial: Any) -> None:
            from optuna.trial import TrialState

            done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
            self.inner = optuna.samplers.TPESampler(seed=seed + done)
            self.inner.before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
            return self.inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
            return self.inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.inner.reseed_rng()

    return PerTrialSeeded()


def _rerun_interrupted(study: Any) -> None:
    """Queue again, with the same values, each trial an interruption stopped.

    A trial left RUNNING belongs to a process that died (the study's lock is held by this one): it is
    marked failed and interrupted first. The rerun takes the trial's place, so the continued study
    scores what an uninterrupted one would have.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rerun = rerun_trials(trials)
    for t in trials:
        dead = t.state == TrialState.RUNNING
        if dead:
            study.tell(t.number, state=TrialState.FAIL)
        stopped = dead or (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED_ATTR))
        if stopped and t.number not in rerun and t.params:
            attrs = {k: v for k, v in t.user_attrs.items() if k != INTERRUPTED_ATTR}
            study.enqueue_trial(t.params, user_attrs={**attrs, RERUN_ATTR: t.number}, skip_if_exists=False)


def rerun_trials(trials: Sequence[Any]) -> set[int]:
    """The numbers of the interrupted trials that a later trial reran."""
    return {int(t.user_attrs[RERUN_ATTR]) for t in trials if t.user_attrs.get(RERUN_ATTR) is not None}


def _place(trial: Any) -> int:
    """Where ``trial`` stands in the study's order: a rerun stands where the interrupted trial stood."""
    rerun_of = trial.user_attrs.get(RERUN_ATTR)
    return int(rerun_of) if rerun_of is not None else int(trial.number)


#: the tables of an optuna study database (RDBStorage); a file with other tables is someone else's
OPTUNA_TABLES = frozenset({"studies", "trials", "version_info"})


def check_study_file(path: Path) -> None:
    """Refuse a ``--study`` file that exists and is not an optuna database: optuna would add its tables to
    another program's SQLite file (or fail on a file that is no database at all)."""
    import sqlite3

    if not path.exists() or (path.is_file() and path.stat().st_size == 0):
        return
    if not path.is_file():
        raise ConfigError(f"--study {path}: not a file; give the study's SQLite file (a new name starts a study)")
    with open(path, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            raise ConfigError(f"--study {path}: not an SQLite database; give a new file name to start a study")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise ConfigError(f"--study {path}: cannot read this SQLite file ({exc}); give a new file name") from None
    if tables and not OPTUNA_TABLES <= tables:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise ConfigError(f"--study {path}: an SQLite database of another program (tables: {shown}), not a tuning "
                          f"study; crackseg leaves it untouched: give a new file name to start a study")


def _plain(data: Any) -> Any:
    """``data`` as JSON would give it back (tuples → lists), so a stored signature compares equal."""
    return json.loads(json.dumps(data, default=str))


def run_study(setup: TuneSetup, trials: int, *, timeout: float | None = None, quiet: bool = False) -> TuneResult:
    """Run the study until it holds ``trials`` finished trials (or ``timeout`` seconds pass)."""
    optuna = require_optuna()
    if trials < 1:
        raise ConfigError(f"--trials {trials}: give at least 1")
    with _optuna_silenced(optuna):
        return _run_study(optuna, setup, trials, timeout, quiet)


@contextlib.contextmanager
def _optuna_silenced(optuna: Any) -> Iterator[None]:
    """Only optuna's errors are logged: the progress bar and the summary say the rest, and a failed
    trial's traceback would repeat the one-line error that follows it."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _run_study(optuna: Any, setup: TuneSetup, trials: int, timeout: float | None, quiet: bool) -> TuneResult:
    from optuna.trial import TrialState

    study = open_study(setup)
    masks = {s.stem: s.mask() for s in setup.annotated}
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    todo = trials - len(study.get_trials(deepcopy=False, states=finished))
    ran = 0

    def objective(trial: Any) -> float:
        nonlocal ran
        ran += 1
        values = {name: p.suggest(trial) for name, p in setup.space.items()}

        def report(score: float, done: int) -> None:
            trial.report(score, done)
            if trial.should_prune():
                raise optuna.TrialPruned(f"F {score:.4f} after {done} images")

        try:
            return score_values(setup, values, masks, setup.chunk, report)
        except ConfigError as exc:  # values the labeler refuses together (e.g. low > high): no score, next trial
            trial.set_user_attr("refused", str(exc))
            raise optuna.TrialPruned(f"refused by the labeler: {exc}") from None
        except KeyboardInterrupt:  # rerun with these values when the study continues
            trial.set_user_attr(INTERRUPTED_ATTR, True)
            raise

    if todo > 0:
        log(f"preparing the labeler once (what it trains is cached in {setup.shared_dir})", quiet)
        prepared_labeler(setup, {}, quiet=quiet)
        study.optimize(objective, n_trials=todo, timeout=timeout, show_progress_bar=not quiet,
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    return simplify(setup, study, summarise(study, ran), masks, quiet)


def simplify(setup: TuneSetup, study: Any, result: TuneResult, masks: dict[str, np.ndarray],
             quiet: bool = True) -> TuneResult:
    """Set the best trial's changes back to the defaults where they gain no more than ``setup.tolerance``.

    Fills ``result.layer_params`` / ``layer_value`` / ``changed`` / ``reverted`` (see the module
    docstring); the outcome is cached in the study, keyed by the best trial and the tolerance.
    """
    best = dict(result.best_params)
    result.layer_params, result.layer_value = dict(best), result.best_value
    defaults = space_defaults(setup)
    result.changed = [k for k in setup.space if k in defaults and k in best and best[k] != defaults[k]]
    if setup.tolerance < 0 or not result.changed:
        return result
    key = json.dumps({"trial": result.best_trial, "params": best, "defaults": defaults,
                      "tolerance": setup.tolerance}, sort_keys=True, default=str)
    cached = study.user_attrs.get(SIMPLIFIED_ATTR) or {}
    if cached.get("key") == key:
        result.layer_params, result.layer_value = dict(cached["params"]), float(cached["value"])
        result.reverted = list(cached["reverted"])
        return result
    floor = result.best_value - setup.tolerance
    if result.default_value is not None:  # the layer never scores below the defaults on these images
        floor = max(floor, result.default_value)
    log(f"simplifying: {len(result.changed)} changed parameter(s) tried at their defaults; a change is kept "
        f"when it gains more than {setup.tolerance:g} F (best {result.best_value:.4f})", quiet)
    current, value = dict(best), result.best_value
    for name in result.changed:
        candidate = {**current, name: defaults[name]}
        try:
            score = score_values(setup, candidate, masks, len(setup.annotated))
        except ConfigError as exc:  # the default does not go with the other values: keep the change
            log(f"  {name}: the default {defaults[name]!r} is refused with the other values ({exc}); change kept",
                quiet)
            continue
        back = score >= floor
        log(f"  {name}: {best[name]!r} -> default {defaults[name]!r}: F {score:.4f} "
            f"({'default kept' if back else 'change kept'})", quiet)
        if back:
            current, value = candidate, score
            result.reverted.append(name)
    result.layer_params, result.layer_value = current, value
    study.set_user_attr(SIMPLIFIED_ATTR, {"key": key, "params": current, "value": value,
                                          "reverted": result.reverted})
    return result


def summarise(study: Any, ran: int = 0) -> TuneResult:
    """The :class:`TuneResult` of a study (a :class:`CracksegError` when no trial completed)."""
    from optuna.trial import TrialState

    # a trial an interruption stopped was run again: it is neither a failure nor a trial of its own
    every = study.get_trials(deepcopy=False)
    rerun = rerun_trials(every)
    trials = [t for t in every if t.number not in rerun]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        refused = [t.user_attrs["refused"] for t in trials if t.user_attrs.get("refused")]
        if refused and len(refused) == len(trials):  # the search space holds nothing the labeler accepts
            raise ConfigError(f"study {study.study_name!r}: the labeler refused every trial's values: {refused[0]}; "
                              f"narrow the range (--param) to values it accepts")
        raise CracksegError(f"study {study.study_name!r}: no trial completed (every one was pruned or failed); "
                            f"rerun with more --trials or --no-prune")
    best = max(complete, key=lambda t: (t.value, -_place(t)))  # ties: the earliest trial
    defaults = [t for t in complete if t.user_attrs.get(DEFAULTS_ATTR)]
    return TuneResult(
        best_value=float(best.value), best_params=dict(best.params), best_trial=best.number,
        complete=len(complete), pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials), ran=ran,
        default_value=float(defaults[0].value) if defaults else None,
    )


# -- the config layer ----------------------------------------------------------------------
def tuned_section(setup: TuneSetup, result: TuneResult) -> dict[str, Any]:
    """``{"name": ..., **fixed, **values}``: the ``labeler:`` section of the layer (the simplified best)."""
    return {"name": setup.name, **setup.fixed, **(result.layer_params or result.best_params)}


def layer_text(setup: TuneSetup, result: TuneResult, command: str, out: str | Path) -> str:
    """The YAML layer: a comment header (study, trials, scores, command), then ``labeler:``."""
    from crackseg.config.run_folder import data_label

    default = f"{result.default_value:.4f}" if result.default_value is not None else "not measured"
    searched = "; ".join(p.describe() for p in setup.space.values())
    header = [
        f"crackseg tune: labeler {setup.name!r} calibrated on {len(setup.annotated)} annotated images of "
        f"{data_label(setup.data)}",
        f"study {setup.study_name!r} in {setup.study_path}: {result.finished} trials "
        f"({result.complete} complete, {result.pruned} pruned)",
        f"best pseudo-label F {result.best_value:.4f} (trial {result.best_trial}; the defaults: {default}); "
        f"objective {setup.objective}, protocol {setup.protocol}",
        f"searched: {searched}",
        layer_summary(setup, result),
        *filter(None, [nothing_found(setup, result)]),
        f"command: {command}",
        f"use it: crackseg run --config {out} --data ...   |   crackseg label --config {out} --labeler {setup.name} "
        f"--data ... --out DIR",
    ]
    body = dump_yaml({"labeler": tuned_section(setup, result)})
    return "".join(f"# {line}\n" for line in header) + body


def nothing_found(setup: TuneSetup, result: TuneResult) -> str:
    """A warning when every trial scored 0 (the search had nothing to follow), else ``""``."""
    if result.finished == 0 or result.best_value > 0.0:
        return ""
    layer = (f"the layer's changes ({', '.join(result.kept)}) are chance" if result.kept
             else "the layer keeps the defaults")
    return (f"every trial scored F 0 on the {len(setup.annotated)} annotated images: {setup.name}'s labels never "
            f"overlap the masks there, so the search had nothing to follow and {layer}; look at "
            f"the labels first (crackseg label --labeler {setup.name} --data ... --out DIR): a labeler that finds "
            f"nothing on these photos has to be fixed before it can be calibrated")


def layer_summary(setup: TuneSetup, result: TuneResult) -> str:
    """One line: this layer's F and which of the best trial's changes it keeps."""
    if not result.changed:
        return f"this layer: F {result.best_value:.4f}; the best trial changes no default"
    kept = ", ".join(result.kept) or "none"
    text = f"this layer: F {_f(result.layer_value)}; changes from the defaults kept: {kept}"
    if result.reverted:
        text += (f"; left at the default (changing it gained <= {setup.tolerance:g} F on these images): "
                 + ", ".join(result.reverted))
    return text


def _f(value: float) -> str:
    return "not measured" if math.isnan(value) else f"{value:.4f}"


def log(message: str, quiet: bool = False) -> None:
    """A progress line on stderr (nothing when ``quiet``)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
