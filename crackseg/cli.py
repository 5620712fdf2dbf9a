"""The ``crackseg`` command line: the click group ``cli``, the built-in commands, and ``main``.

Plugins add commands through the ``register_commands`` hook; they are loaded only
when a command needs them, so ``crackseg evaluate`` starts without importing torch.
A user error prints one line (``crackseg: error: ...``) and exits with status 2.
Tests drive commands in-process with ``click.testing.CliRunner().invoke(crackseg.cli.cli, [...])``
or ``crackseg.cli.main([...])`` (which adds the one-line error handling).
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from crackseg.apps.compare.command import compare
from crackseg.apps.measure import TRAVEL_DIRECTIONS, MeasureOptions, measure_folder
from crackseg.apps.scaffold import KINDS as SCAFFOLD_KINDS
from crackseg.apps.scaffold import new_plugin
from crackseg.base.distributed import detect, end_worker, init, joined_a_process_group, launch_local, resolve_device
from crackseg.base.errors import ConfigError, CracksegError
from crackseg.base.io import write_text
from crackseg.config.layers import load_yaml, parse_set
from crackseg.config.run_config import (
    PROTOCOLS,
    RunConfig,
    data_spec,
    demo_layer,
    merge_layers,
    resolve_config,
    resolve_data_section,
    resolve_section,
    to_yaml,
)
from crackseg.config.run_folder import check_run_dir, default_out
from crackseg.data.loading import load_samples
from crackseg.evaluation.metrics import evaluate_dirs, write_prf_table
from crackseg.labels.contract import LabelContext, declared_artefacts
from crackseg.labels.factory import create_labeler
from crackseg.plugins import KINDS, get_manager, registry
from crackseg.plugins.factory import default_name
from crackseg.plugins.listing import check_plugins, plugin_lines, plugins_json
from crackseg.prediction.predict_folder import collect_images, predict_paths

#: packages whose absence is reported as a missing extra instead of a traceback
_HEAVY_PACKAGES = ("torch", "torchvision", "open_clip", "segmentation_models_pytorch", "pytorch_grad_cam",
                   "pydensecrf", "skimage", "skan", "matplotlib", "transformers", "timm")


class CracksegGroup(click.Group):
    """Adds plugin commands lazily: built-in commands resolve without loading any plugin."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not CracksegGroup._plugins_added:
            CracksegGroup._plugins_added = True
            get_manager().add_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None:
            self._add_plugin_commands()
            cmd = super().get_command(ctx, cmd_name)
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)


@click.group(cls=CracksegGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="crackseg")
def cli() -> None:
    """crackseg: weakly supervised crack segmentation from patch-level labels.

    A mistake in the input is one line `crackseg: error: ...` and exit status 2; add
    --traceback anywhere (or set CRACKSEG_TRACEBACK=1) to see the full traceback.

    \b
    Quick start:
      crackseg run                                   # the default demo: synthetic data
      crackseg run --labeler cam-location --backbone crackclip --data PATH
      crackseg predict runs/RUN photos/ --out masks/
      crackseg evaluate PRED_DIR GT_DIR --json
    """


# -- shared run options ---------------------------------------------------------
def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that builds a run configuration takes."""
    opts = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file."),
        click.option("--labeler", help="Pseudo-labeler name (crackseg list labelers)."),
        click.option("--backbone", help="Segmentation backbone name (crackseg list backbones)."),
        click.option("--trainer", help="Training method (crackseg list trainers; default: the default trainer)."),
        click.option("--prompts", help="Prompt set name or file, for backbones that take one (crackseg list prompts)."),
        click.option("--loss", help="Loss: a registered loss or a weighted sum, e.g. 'a+0.5*b' (crackseg list losses; "
                                    "default: the backbone's own)."),
        click.option("--data", help="Dataset name (crackseg list datasets) or a folder path."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to compute."),
        click.option("--seed", type=int, help="Random seed."),
        click.option("--out", type=click.Path(file_okay=False),
                     help="Run folder (default runs/<labeler>-<backbone>-<data>)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                     help="Override any config key, e.g. train.epochs=3."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def measure_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``crackseg measure`` that ``predict --measure`` and ``run --measure`` share."""
    for opt in reversed([
        click.option("--px-per-mm", type=float, help="Image scale: lengths in mm and areas in mm² (default: pixels)."),
        click.option("--min-area", type=int, default=10, show_default=True,
                     help="Drop crack components smaller than this many pixels."),
        click.option("--travel", type=click.Choice(TRAVEL_DIRECTIONS), default="vertical", show_default=True,
                     help="Direction of travel in the images: longitudinal cracks run along it."),
    ]):
        f = opt(f)
    return f


def build_config(config_file: str | None, labeler: str | None, backbone: str | None, trainer: str | None,
                 prompts: str | None, loss: str | None, data: str | None, device: str | None, seed: int | None,
                 out: str | None, sets: tuple[str, ...]) -> RunConfig:
    """The run configuration from ``--config``, the flags and ``--set`` (see :mod:`crackseg.config.run_config`)."""
    layers: list[dict[str, Any]] = []
    if config_file:
        layers.append(load_yaml(config_file))
    flags: dict[str, Any] = {}
    if labeler:
        flags["labeler"] = {"name": labeler}
    if backbone:
        flags["backbone"] = {"name": backbone}
    if trainer:
        flags["trainer"] = {"name": trainer}
    if data:
        flags["data"] = data_spec(data)
    if loss:
        flags["loss"] = loss
    if device:
        flags["device"] = device
    if seed is not None:
        flags["seed"] = seed
    if out:
        flags["out"] = out
    layers.append(flags)
    layers.append(parse_set(list(sets)))
    return resolve_config(layers, prompts=prompts)


@cli.command()
@run_options
@click.option("--precision", type=click.Choice(["32", "16-mixed", "bf16-mixed"]),
              help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes on this machine (starts torchrun; each uses one GPU on CUDA).")
@click.option("--measure", "do_measure", is_flag=True,
              help="Also measure the predicted cracks at the ODS threshold (RUN_DIR/measurements/).")
@measure_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines (the table is still printed).")
def run(precision: str | None, resume: bool, nproc: int, do_measure: bool, px_per_mm: float | None,
        min_area: int, travel: str, quiet: bool, **kw: Any) -> None:
    """Train a backbone on pseudo-labels, predict the test split, evaluate.

    Under torchrun (or with --nproc N) training uses DistributedDataParallel; the
    batch size stays the global one.
    """
    opt = MeasureOptions(px_per_mm=px_per_mm, min_area=min_area, travel=travel)  # checked before training
    if precision:
        kw["sets"] = tuple(kw["sets"]) + (f"train.precision={precision}",)
    cfg = build_config(**kw)
    if not cfg.out:
        cfg.out = default_out(cfg)
    if nproc > 1:
        check_run_dir(cfg, resume)
        launch_local(nproc, _argv_without_nproc(), out=cfg.out)
    else:
        from crackseg.apps.runner import run as do_run

        do_run(cfg, resume=resume, quiet=quiet)
    if do_measure and nproc == 1 and detect().rank == 0:  # under --nproc the launched rank 0 measures
        target = Path(cfg.out) / "measurements"
        instances, measured = measure_folder(cfg.out, target, opt, quiet=quiet)
        click.echo(measure_summary(instances, measured, opt, target))


def _argv_without_nproc() -> list[str]:
    """This process's ``crackseg`` arguments minus ``--nproc N``."""
    out, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


@cli.group()
def config() -> None:
    """Inspect configurations."""


@config.command("show")
@run_options
def config_show(**kw: Any) -> None:
    """Print the resolved config (defaults + file + flags + --set) without running."""
    cfg = build_config(**kw)
    if not cfg.out:
        cfg.out = default_out(cfg)
    click.echo(to_yaml(cfg), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON list of plugins (for scripts).")
@click.option("--check", is_flag=True,
              help="Check every plugin (registration and cheap contract checks); exit 1 on a problem.")
def plugins(as_json: bool, check: bool) -> None:
    """List installed plugins: distribution, what each registered, commands, problems."""
    m = get_manager()
    cli.list_commands(click.Context(cli))  # lets every plugin add its commands, so they are listed
    if check:
        results = check_plugins(m)
        if as_json:
            click.echo(json.dumps(results, indent=2))
        else:
            for name, problems in results.items():
                info = m.info[name]
                state = "not checked: " + info.missing if info.missing else ("ok" if not problems else "PROBLEMS")
                click.echo(f"{info.describe()}: {state}")
                for text in problems:
                    click.echo(f"  - {text}")
        if any(results.values()):
            raise click.exceptions.Exit(1)
        return
    if as_json:
        click.echo(json.dumps(plugins_json(m), indent=2))
        return
    for _, info in sorted(m.info.items()):
        for line in plugin_lines(info):
            click.echo(line)


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("pattern", default="*")
def list_cmd(kind: str, pattern: str) -> None:
    """List registered labelers, backbones, prompts, losses or datasets (PATTERN: shell wildcards)."""
    reg = registry(kind)
    names = reg.names(pattern)
    missing = [e for e in reg.unavailable() if fnmatch.fnmatchcase(e.name, pattern)]
    if not names and not missing:
        raise CracksegError(f"no {kind} match {pattern!r} (available: {', '.join(reg.names()) or 'none'})")
    width = max(len(n) for n in [*names, *(e.name for e in missing)])
    for n in names:
        e = reg.get(n)
        params = ", ".join(f"{k}={v!r}" for k, v in e.param_defaults().items())
        click.echo(f"{n:<{width}}  {e.description}  [{e.plugin}]")
        if params:
            click.echo(f"{'':<{width}}    params: {params}")
    for e in missing:
        click.echo(f"{e.name:<{width}}  (not available: {e.unavailable})")


@cli.command()
@click.argument("pred_dir", type=click.Path())
@click.argument("gt_dir", required=False, type=click.Path())
@click.option("--data", help="Score against the masks of a dataset split instead of GT_DIR: a dataset name "
                             "(crackseg list datasets) or a folder path.")
@click.option("--split", help="The split of --data to score against.  [default: test]")
@click.option("--protocol", type=click.Choice(PROTOCOLS),
              help=f"How ODS / OIS / AP are computed (see README, Metric protocols).  [default: a run folder's "
                   f"eval.protocol, else {PROTOCOLS[0]}]")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (ods, ois, ap, n, ...).")
@click.option("--prf", type=click.Path(dir_okay=False), help="Also write the per-threshold P/R/F table to FILE.")
def evaluate(pred_dir: str, gt_dir: str | None, data: str | None, split: str | None, protocol: str | None,
             as_json: bool, prf: str | None) -> None:
    """Score probability maps (uint8 PNG, value/255) against ground-truth masks, paired by file stem.

    \b
    crackseg evaluate RUN_DIR                  the run's predictions/ against its own test split
    crackseg evaluate PRED_DIR GT_DIR          a folder of predictions against a folder of masks
    crackseg evaluate PRED_DIR --data D [--split S]   against the masks of split S of dataset D

    Nothing is written into the inputs; --prf FILE writes the P/R/F table.
    """
    from crackseg.base.errors import DataError
    from crackseg.config.run_folder import CONFIG_FILE, data_label
    from crackseg.evaluation.scoring import run_test_split, score_predictions, split_samples

    info: dict[str, Any] = {}
    if (Path(pred_dir) / CONFIG_FILE).is_file():
        if gt_dir or data or split:
            raise CracksegError(f"{pred_dir} is a run folder, scored against its own test split: it takes no "
                                f"GT_DIR, --data or --split (to score its predictions against other masks, pass "
                                f"{Path(pred_dir) / 'predictions'})")
        preds = Path(pred_dir) / "predictions"
        if not preds.is_dir():
            raise CracksegError(f"{pred_dir}: run folder without predictions/ (the run has not finished; "
                                f"continue it with crackseg run --resume)")
        spec, samples, run_protocol = run_test_split(pred_dir)
        info = {"data": data_label(spec), "split": spec["test_split"]}
        res = score_predictions(preds, samples, protocol or run_protocol,
                                f"the run's test split ({info['data']}, split {info['split']!r})", extra_ok=False)
    else:
        parent = Path(pred_dir).resolve().parent
        in_run = (parent / CONFIG_FILE).is_file()
        if not data and not gt_dir:
            hint = f", or pass the run folder {parent} itself" if in_run else ""
            raise CracksegError(f"{pred_dir}: not a run folder; give GT_DIR (a folder of masks) or --data DATASET "
                                f"[--split S]{hint}")
        if data and gt_dir:
            raise CracksegError("give GT_DIR or --data, not both")
        if gt_dir and split:
            raise CracksegError("--split selects a split of --data; with GT_DIR every mask in it is scored")
        try:
            if data:
                spec, samples = split_samples(data, split or "test")
                info = {"data": data_label(spec), "split": split or "test"}
                res = score_predictions(pred_dir, samples, protocol or PROTOCOLS[0],
                                        f"{info['data']} split {info['split']!r}")
            else:
                res = evaluate_dirs(pred_dir, str(gt_dir), protocol or PROTOCOLS[0])
        except DataError as exc:
            if not in_run:
                raise
            raise DataError(f"{exc}; {parent} is a run folder: crackseg evaluate {parent} scores its predictions "
                            f"against its own test split") from None
    if prf:
        try:
            write_prf_table(res, prf)
        except OSError as exc:
            click.echo(f"crackseg: warning: {prf}: cannot write the P/R/F table ({exc.strerror or exc}); "
                       f"the scores are unaffected", err=True)
            prf = None
    if as_json:
        click.echo(json.dumps({**res.to_json(), **info}))
    else:
        where = f" ({info['data']}, split {info['split']})" if info else ""
        click.echo(f"protocol {res.protocol}, {res.n} images{where}")
        click.echo(f"ODS {100 * res.ods:.2f}  OIS {100 * res.ois:.2f}  AP {100 * res.ap:.2f}  (%)")
        if prf:
            click.echo(f"P/R/F per threshold: {prf}")


@cli.command()
@click.argument("source", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threshold", type=float,
              help="Probability T: mask = value/255 > T (default: a run folder's ODS threshold, else the saved "
                   "predict.threshold).")
@click.option("--mode", type=click.Choice(["auto", "resize", "tile"]), help="Large images: tile or resize.")
@click.option("--measure", "do_measure", is_flag=True, help="Also measure the cracks (OUT/measurements/).")
@measure_options
@click.option("-q", "--quiet", is_flag=True)
def predict(source: str, images: tuple[str, ...], out: str, device: str, threshold: float | None,
            mode: str | None, do_measure: bool, px_per_mm: float | None, min_area: int, travel: str,
            quiet: bool) -> None:
    """Apply a finished run (RUN_DIR, its model.pt or checkpoint.pt, or an exported MODEL.onnx) to photos of any
    size; prints the threshold used and why."""
    opt = MeasureOptions(px_per_mm=px_per_mm, min_area=min_area, travel=travel)  # checked before predicting
    written = predict_paths(source, images, out, device=device, threshold=threshold, mode=mode, quiet=quiet,
                            log=click.echo)
    click.echo(f"wrote {len(written)} masks to {out} (probabilities in {Path(out) / 'prob'}, "
               f"overlays in {Path(out) / 'overlay'})")
    if do_measure:
        photos = {p.stem: p for p in collect_images(images)}
        target = Path(out) / "measurements"
        instances, measured = measure_folder(out, target, opt, images=photos, quiet=quiet)
        click.echo(measure_summary(instances, measured, opt, target))


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--threshold", type=float,
              help="Probability T: mask = value/255 > T (needed for probability maps; a run's default is its ODS "
                   "threshold).")
@click.option("--images", type=click.Path(file_okay=False), help="Photos (same stems) to draw the overlays on.")
@measure_options
@click.option("-q", "--quiet", is_flag=True)
def measure(source: str, out: str, threshold: float | None, images: str | None, px_per_mm: float | None,
            min_area: int, travel: str, quiet: bool) -> None:
    """Measure cracks in masks (a folder of masks, or a RUN_DIR's predictions): length, width, orientation,
    topology per crack; totals and density per image."""
    opt = MeasureOptions(threshold=threshold, px_per_mm=px_per_mm, min_area=min_area, travel=travel)
    instances, images_ = measure_folder(source, out, opt, images=images, quiet=quiet)
    click.echo(measure_summary(instances, images_, opt, out))


def measure_summary(instances: list[Any], images: list[Any], opt: MeasureOptions, out: str | Path) -> str:
    """The lines ``measure`` prints: counts, totals, where the files are."""
    unit = opt.unit
    total = sum(i.length for i in instances)
    widest = max((i.width_max for i in instances), default=0.0)
    return (f"{len(instances)} cracks in {len(images)} images: total length {total:.1f} {unit}, "
            f"max width {widest:.1f} {unit}\n"
            f"wrote {Path(out) / 'instances.csv'}, images.csv, measurements.json and overlays/")


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Model format.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version (14-23).")
@click.option("--dynamic", is_flag=True, help="Any input height and width (default: the run's window size).")
@click.option("--fp16", is_flag=True, help="Half-precision weights and arithmetic (float32 in and out; half the size).")
def export(source: str, fmt: str, out: str, opset: int, dynamic: bool, fp16: bool) -> None:
    """Export a finished run's backbone (RUN_DIR or CHECKPOINT) for deployment without PyTorch."""
    from crackseg.apps.export import export_onnx

    res = export_onnx(source, out, opset=opset, dynamic=dynamic, fp16=fp16)
    sizes = " and ".join(f"{s}x{s}" for s in res.sizes)
    click.echo(f"wrote {res.path} ({res.path.stat().st_size / 2**20:.1f} MiB, {res.exporter} exporter, opset {opset}"
               f"{', fp16' if fp16 else ''}); "
               f"matches the torch model to {res.max_diff:.1e} at {sizes}")
    click.echo(f"run it without torch: crackseg predict {res.path} PHOTOS --out DIR")


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), help="The HTML file to write (default: SOURCE/report.html).")
@click.option("--gallery", type=int, default=12, show_default=True,
              help="Images in the gallery, spread over the F range (0 = none).")
@click.option("--no-measure", is_flag=True, help="Leave crack measurements out of the per-image table.")
@click.option("-q", "--quiet", is_flag=True)
def report(source: str, out: str | None, gallery: int, no_measure: bool, quiet: bool) -> None:
    """One self-contained HTML page for a RUN_DIR (metrics, curves, per-image table, gallery) or a compare
    grid folder (every table with its PR curves and figures)."""
    from crackseg.apps.report import ReportOptions, write_report

    path = write_report(source, out, ReportOptions(gallery=gallery, measure=not no_measure), quiet=quiet)
    click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); open it in any browser, offline")


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(SCAFFOLD_KINDS), default="backbone", show_default=True,
              help="What the plugin registers.")
@click.option("--out", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Folder in which the package folder crackseg-NAME is written.")
def new_plugin_cmd(name: str, kind: str, out: str) -> None:
    """Write a ready plugin package crackseg-NAME: pyproject with the entry point, module, contract tests, README.

    Its tests pass as generated once it is installed: cd crackseg-NAME && pip install -e ".[test]" && pytest
    """
    root = new_plugin(name, kind, out)
    click.echo(f"wrote {root}; next: cd {root} && pip install -e '.[test]' && pytest")


#: top-level keys `crackseg label` reads from --config / --set
_LABEL_KEYS = ("labeler", "data")


def labeler_layers(command: str, labeler: str, data: str, config_file: str | None,
                   sets: tuple[str, ...]) -> dict[str, Any]:
    """The merged ``labeler:`` and ``data:`` sections of ``label`` and ``tune`` (``--config``, options, ``--set``)."""
    raw = merge_layers([load_yaml(config_file) if config_file else {},
                        {"labeler": {"name": labeler}, "data": data_spec(data)}, parse_set(list(sets))])
    unknown = sorted(set(raw) - set(_LABEL_KEYS))
    if unknown:
        raise ConfigError(f"config key {unknown[0]!r} is not used by `crackseg {command}` "
                          f"(valid: {', '.join(_LABEL_KEYS)})")
    data_name = raw["data"].get("name") or default_name("datasets")
    return merge_layers([demo_layer(str(data_name), labeler), raw])


@cli.command()
@click.option("--labeler", required=True, help="Pseudo-labeler name (crackseg list labelers).")
@click.option("--data", required=True, help="Dataset name or folder path.")
@click.option("--split", default="train", show_default=True, help="Which split to label.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for <stem>.png labels.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with labeler: and data: sections.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="e.g. labeler.threshold=0.4")
@click.option("-q", "--quiet", is_flag=True)
def label(labeler: str, data: str, split: str, out: str, device: str, seed: int,
          config_file: str | None, sets: tuple[str, ...], quiet: bool) -> None:
    """Write pseudo-labels (DIR/<stem>.png, 0/255) and soft maps (DIR/soft/) for a dataset split."""
    from crackseg.apps.runner import prepare_labeler
    from crackseg.labels.pseudo_labels import write_pseudo_labels

    raw = labeler_layers("label", labeler, data, config_file, sets)
    lab_section = resolve_section("labelers", raw["labeler"], "labeler")
    data_section = resolve_data_section(raw["data"])
    samples = load_samples(data_section, split)
    env = detect()
    dev = resolve_device(device, env)
    init(env, dev)
    lab = create_labeler(labeler, **{k: v for k, v in lab_section.items() if k != "name"})
    work = Path(out) / ".labeler"
    ctx = LabelContext(device=dev, work_dir=work, seed=seed, quiet=quiet,
                       artefact_dirs={name: work / name for name in declared_artefacts(lab)})
    prepare_labeler(lab, samples, ctx, env, labeler)
    files = write_pseudo_labels(lab, samples, Path(out), ctx, env, name=labeler)
    if env.is_main:
        click.echo(f"wrote {len(files)} pseudo-labels to {out} (soft maps in {Path(out) / 'soft'})")


@cli.command()
@click.option("--labeler", required=True, help="Pseudo-labeler name (crackseg list labelers).")
@click.option("--data", required=True, help="Dataset name or folder path.")
@click.option("--split", help="Split whose annotated images are scored (default: the data's train_split).")
@click.option("--annotated", type=int, default=10, show_default=True,
              help="Score on the first N images of the split that have a mask.")
@click.option("--trials", type=int, default=30, show_default=True,
              help="Finished trials the study should hold; rerunning continues up to this many.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The YAML config layer to write.")
@click.option("--study", type=click.Path(dir_okay=False), help="The study's SQLite file (default OUT.study.db).")
@click.option("--study-name", help="Study name inside that file (default tune-<labeler>).")
@click.option("--param", "params", multiple=True, metavar="NAME[=LO:HI|=LO:HI:log|=a,b]",
              help="Search this labeler parameter too, or over this range instead of the declared one.")
@click.option("--objective", type=click.Choice(("binary", "soft")), default="binary", show_default=True,
              help="binary: F of the binary masks (what `run` trains on); soft: ODS of the soft maps.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=PROTOCOLS[0], show_default=True,
              help="How F is pooled over the images (see README, Metric protocols).")
@click.option("--prune-every", type=int, default=0,
              help="Images between intermediate scores for pruning (default: a fifth of them).")
@click.option("--no-prune", is_flag=True, help="Score every trial on every image (no early stopping).")
@click.option("--tolerance", type=float, default=None, metavar="F",
              help="Keep a parameter at its default unless changing it gains more than F on the annotated "
                   "images (default 0.01; -1 keeps the best trial as it is).")
@click.option("--timeout", type=float, help="Start no trial after this many seconds.")
@click.option("--shared-dir", type=click.Path(file_okay=False),
              help="Cache of what the labeler trains (default: next to the study); `run --set shared_dir=` reuses it.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with labeler: and data: sections.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Fix a parameter (not searched), e.g. labeler.iterations=5, or set data keys.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines (the result is still printed).")
def tune(labeler: str, data: str, split: str | None, annotated: int, trials: int, out: str, study: str | None,
         study_name: str | None, params: tuple[str, ...], objective: str, protocol: str, prune_every: int,
         no_prune: bool, tolerance: float | None, timeout: float | None, shared_dir: str | None, device: str,
         seed: int, config_file: str | None, sets: tuple[str, ...], quiet: bool) -> None:
    """Calibrate a labeler on a few annotated images: search its parameters for the best pseudo-label F.

    Writes OUT, a config layer with the best parameters for `run`, `label` and `compare`
    (--config OUT). The study is kept in a SQLite file: rerunning the same command continues it.
    """
    from crackseg.apps import tune as tuning

    tuning.require_optuna()
    if trials < 1:
        raise ConfigError(f"--trials {trials}: give at least 1")
    if annotated < 1:
        raise ConfigError(f"--annotated {annotated}: tune needs at least one annotated image (a mask); "
                          f"e.g. --annotated 10")
    setup = _tune_setup(labeler, data, split, annotated, out, study, study_name, params, objective, protocol,
                        prune_every, not no_prune, shared_dir, device, seed, config_file, sets, quiet)
    if tolerance is not None:
        setup.tolerance = tolerance
    tuning.log(f"tune: {labeler} on {len(setup.annotated)} annotated images; searching "
               + "; ".join(p.describe() for p in setup.space.values()), quiet)
    try:
        result = tuning.run_study(setup, trials, timeout=timeout, quiet=quiet)
    except KeyboardInterrupt:
        click.echo(f"crackseg: interrupted; finished trials are kept in {setup.study_path}: rerun the same "
                   f"command to continue", err=True)
        raise click.exceptions.Exit(130) from None
    command = _tune_command(labeler, data, split, annotated, trials, out, study, study_name, params, objective,
                            protocol, prune_every, no_prune, tolerance, shared_dir, device, seed, config_file, sets)
    write_text(out, tuning.layer_text(setup, result, command, out))
    default = f"{result.default_value:.4f}" if result.default_value is not None else "not measured"
    click.echo(f"{result.finished} trials in {setup.study_path} ({result.ran} run now, {result.pruned} pruned); "
               f"best pseudo-label F {result.best_value:.4f} (trial {result.best_trial}), defaults {default}")
    click.echo("best: " + ", ".join(f"{k}={v!r}" for k, v in result.best_params.items()))
    click.echo(tuning.layer_summary(setup, result))
    if warning := tuning.nothing_found(setup, result):
        click.echo(f"crackseg: warning: {warning}", err=True)
    click.echo(f"wrote {out}; use it: crackseg run --config {out} ...")


def _tune_setup(labeler: str, data: str, split: str | None, annotated: int, out: str, study: str | None,
                study_name: str | None, params: tuple[str, ...], objective: str, protocol: str, prune_every: int,
                prune: bool, shared_dir: str | None, device: str, seed: int, config_file: str | None,
                sets: tuple[str, ...], quiet: bool) -> Any:
    """The :class:`crackseg.apps.tune.TuneSetup` of the ``tune`` command's options (every check before any work)."""
    from crackseg.apps import tune as tuning
    from crackseg.config.search_space import DeclarationError, build_space, parse_param_options
    from crackseg.data.loading import train_samples
    from crackseg.plugins.blame import plugin_error
    from crackseg.plugins.factory import get_entry

    raw = labeler_layers("tune", labeler, data, config_file, sets)
    resolve_section("labelers", raw["labeler"], "labeler")  # checks the fixed parameters
    fixed = {k: v for k, v in raw["labeler"].items() if k != "name"}
    entry = get_entry("labelers", labeler)
    owner = f"labeler {labeler!r}"
    named = parse_param_options(params)
    try:
        space = build_space(entry.params, named, set(fixed), owner)
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
    data_section = resolve_data_section(raw["data"])
    split = split or data_section["train_split"]
    samples = load_samples(data_section, split)
    chosen = tuning.annotated_samples(samples, annotated, f"split {split!r} of dataset {data_section['name']!r}")
    train = train_samples(data_section)
    study_path = Path(study) if study else Path(f"{out}.study.db")
    return tuning.TuneSetup(
        name=labeler, fixed=fixed, space=space, data=data_section, train=train, annotated=chosen,
        study_path=study_path, study_name=study_name or f"tune-{labeler}",
        shared_dir=Path(shared_dir) if shared_dir else study_path.with_name(study_path.stem + ".shared"),
        objective=objective, protocol=protocol, chunk=prune_every or max(1, -(-len(chosen) // 5)), seed=seed,
        device=_tune_device(device), prune=prune, defaults=entry.param_defaults(),
    )


def _tune_device(requested: str) -> str:
    """``--device``: ``cpu`` needs no torch (a labeler may not use it); ``auto`` without torch is the CPU."""
    if requested == "cpu":
        return "cpu"
    try:
        return resolve_device(requested)
    except ModuleNotFoundError:
        if requested == "auto":
            return "cpu"
        raise


def _tune_command(labeler: str, data: str, split: str | None, annotated: int, trials: int, out: str,
                  study: str | None, study_name: str | None, params: tuple[str, ...], objective: str, protocol: str,
                  prune_every: int, no_prune: bool, tolerance: float | None, shared_dir: str | None, device: str,
                  seed: int, config_file: str | None, sets: tuple[str, ...]) -> str:
    """The ``crackseg tune`` command line that reproduces (continues) this study."""
    import shlex

    args = ["crackseg", "tune", "--labeler", labeler, "--data", data]
    if split:
        args += ["--split", split]
    args += ["--annotated", str(annotated), "--trials", str(trials), "--out", out]
    for flag, value in (("--study", study), ("--study-name", study_name), ("--shared-dir", shared_dir),
                        ("--config", config_file)):
        if value:
            args += [flag, value]
    for p in params:
        args += ["--param", p]
    if objective != "binary":
        args += ["--objective", objective]
    if protocol != PROTOCOLS[0]:
        args += ["--protocol", protocol]
    if prune_every:
        args += ["--prune-every", str(prune_every)]
    if no_prune:
        args.append("--no-prune")
    if tolerance is not None:
        args += ["--tolerance", f"{tolerance:g}"]
    if device != "auto":
        args += ["--device", device]
    if seed:
        args += ["--seed", str(seed)]
    for s in sets:
        args += ["--set", s]
    return shlex.join(args)


cli.add_command(compare)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit status 2 for user errors.

    ``--traceback`` anywhere on the command line (or ``CRACKSEG_TRACEBACK=1``) also prints
    the full traceback of an error, e.g. of a plugin's failure, for plugin authors. A
    torchrun worker ends through :func:`crackseg.base.distributed.end_worker`.
    """
    try:
        _main(argv)
    except SystemExit as exc:
        if joined_a_process_group():
            end_worker(_exit_status(exc.code))
        raise
    except BaseException:
        if joined_a_process_group():  # what Python prints for an uncaught error, then status 1
            traceback.print_exc()
            end_worker(1)
        raise
    if joined_a_process_group():
        end_worker(0)


def _exit_status(code: object) -> int:
    """The process status ``sys.exit(code)`` gives (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _main(argv: list[str] | None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in args or os.environ.get("CRACKSEG_TRACEBACK", "") not in ("", "0")
    args = [a for a in args if a != "--traceback"]
    try:
        # outside standalone mode click returns the status of `raise click.exceptions.Exit(n)`
        status = cli.main(args=args, prog_name="crackseg", standalone_mode=False)
        if isinstance(status, int) and status:
            sys.exit(status)
    except CracksegError as exc:
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(f"crackseg: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in _HEAVY_PACKAGES:
            raise
        click.echo(f"crackseg: error: this needs the {top!r} package, which is not installed; "
                   f"pip install 'crackseg[all]' installs every optional dependency", err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("crackseg: interrupted (continue with --resume)", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other user error
        where = f"crackseg {exc.ctx.command_path.split(' ', 1)[1]} --help" if exc.ctx and " " in exc.ctx.command_path \
            else "crackseg --help"
        click.echo(f"crackseg: error: {exc.format_message()} (see {where})", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
