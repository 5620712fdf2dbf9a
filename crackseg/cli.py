"""The ``crackseg`` command line: the click group ``cli``, the built-in commands, and ``main``.

Plugins add commands through the ``register_commands`` hook; they are loaded only
when a command needs them, so ``crackseg evaluate`` starts without importing torch.
A user error prints one line (``crackseg: error: ...``) and exits with status 2.
Tests drive commands in-process with ``click.testing.CliRunner().invoke(crackseg.cli.cli, [...])``
or ``crackseg.cli.main([...])`` (which adds the one-line error handling).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from crackseg.apps.measure import TRAVEL_DIRECTIONS, MeasureOptions, measure_and_summarise
from crackseg.apps.scaffold import KINDS as SCAFFOLD_KINDS
from crackseg.apps.scaffold import new_plugin
from crackseg.base.console import error_line, warn
from crackseg.base.distributed import detect, end_worker, joined_a_process_group
from crackseg.base.errors import CracksegError, StorageError
from crackseg.base.protocols import PROTOCOLS
from crackseg.base.storage import DISK_FULL, storage_error
from crackseg.plugins import KINDS, get_manager

# What only some commands need (the run configuration and its YAML, `compare`, prediction) is imported in those
# commands, so that `crackseg evaluate` starts with little more than numpy and OpenCV.

#: built-in commands defined in other modules, imported on first use: name -> (module, attribute)
_LAZY_COMMANDS = {"compare": ("crackseg.apps.compare.command", "compare"),
                  "annotate": ("crackseg.apps.annotate.command", "annotate")}

#: packages whose absence is reported as a missing extra instead of a traceback
_HEAVY_PACKAGES = ("torch", "torchvision", "open_clip", "segmentation_models_pytorch", "pytorch_grad_cam",
                   "pydensecrf", "skimage", "skan", "matplotlib", "transformers", "timm")


class CracksegGroup(click.Group):
    """Adds plugin commands lazily: built-in commands resolve without loading any plugin."""

    _plugins_added = False

    def _add_lazy_command(self, name: str) -> None:
        if name not in self.commands:
            module, attr = _LAZY_COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)

    def _add_plugin_commands(self) -> None:
        if not CracksegGroup._plugins_added:
            CracksegGroup._plugins_added = True
            for name in _LAZY_COMMANDS:  # first: a plugin cannot take a built-in command's name
                self._add_lazy_command(name)
            get_manager().add_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in _LAZY_COMMANDS:
            self._add_lazy_command(cmd_name)
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
    Quick start (the two runs work offline, on the built-in synthetic data):
      crackseg run                           # the demo: fsv + U-Net, in runs/fsv-unet-synthetic
      crackseg run --labeler ridge --backbone unet --data synthetic  # no labels, no weights
      crackseg predict runs/fsv-unet-synthetic PHOTOS/ --out masks/  # masks for your photos
      crackseg evaluate PRED_DIR GT_DIR --json
    """


# -- shared run options ---------------------------------------------------------
def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options every command that builds a run configuration takes."""
    for opt in reversed([
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
    ]):
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


@cli.command()
@run_options
@click.option("--precision", type=click.Choice(["32", "16-mixed", "bf16-mixed"]),
              help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--wait", is_flag=True, help="When another run is working in --out, wait for it to end (default: stop).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes on this machine (starts torchrun; each uses one GPU on CUDA).")
@click.option("--measure", "do_measure", is_flag=True,
              help="Also measure the predicted cracks (RUN_DIR/measurements/) at the ODS threshold "
                   "(without masks to choose one: predict.threshold).")
@measure_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines (the table is still printed).")
def run(precision: str | None, resume: bool, wait: bool, nproc: int, do_measure: bool, px_per_mm: float | None,
        min_area: int, travel: str, quiet: bool, **kw: Any) -> None:
    """Train a backbone on pseudo-labels, predict the test split, evaluate.

    Under torchrun (or with --nproc N) training uses DistributedDataParallel; the
    batch size stays the global one.
    """
    from crackseg.apps.launch import run_or_launch

    opt = MeasureOptions(px_per_mm=px_per_mm, min_area=min_area, travel=travel)  # checked before training
    cfg = command_run_config(kw, precision)
    try:
        run_or_launch(cfg, nproc=nproc, resume=resume, quiet=quiet, wait=wait)
    except StorageError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise StorageError(f"{exc} with --resume (the run goes on from its last checkpoint)", exc.path,
                           exc.errno) from exc
    if do_measure and nproc == 1 and detect().rank == 0:  # under --nproc the launched rank 0 measures
        click.echo(measure_and_summarise(cfg.out, Path(cfg.out) / "measurements", opt, quiet=quiet))


@cli.group()
def config() -> None:
    """Inspect configurations."""


@config.command("show")
@run_options
def config_show(**kw: Any) -> None:
    """Print the resolved config (defaults + file + flags + --set) without running."""
    from crackseg.config.run_config import to_yaml

    click.echo(to_yaml(command_run_config(kw)), nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON list of plugins (for scripts).")
@click.option("--check", is_flag=True,
              help="Check every plugin (registration and cheap contract checks); exit 1 on a problem.")
def plugins(as_json: bool, check: bool) -> None:
    """List installed plugins: distribution, what each registered, commands, problems."""
    from crackseg.apps.listing import plugins_report

    cli.list_commands(click.Context(cli))  # lets every plugin add its commands, so they are listed
    lines, status = plugins_report(get_manager(), as_json=as_json, check=check)
    for line in lines:
        click.echo(line)
    if status:
        raise click.exceptions.Exit(status)


@cli.command("list")
@click.argument("kind", metavar="{" + "|".join(KINDS) + "}")  # checked by registry_lines: a "did you mean" for typos
@click.argument("pattern", default="*")
def list_cmd(kind: str, pattern: str) -> None:
    """List registered labelers, backbones, prompts, losses or datasets (PATTERN: shell wildcards)."""
    from crackseg.apps.listing import registry_lines

    for line in registry_lines(kind, pattern):
        click.echo(line)


@cli.command()
@click.argument("pred_dir", type=click.Path())
@click.argument("gt_dir", required=False, type=click.Path())
@click.option("--data", help="Score against the masks of a dataset split instead of GT_DIR: a dataset name "
                             "(crackseg list datasets) or a folder path.")
@click.option("--split", help="The split of --data to score against.  [default: test]")
@click.option("--protocol", type=click.Choice(PROTOCOLS),
              help=f"How ODS / OIS / AP are computed (see docs/guides/metrics.md).  [default: a run folder's "
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
    from crackseg.apps.evaluate import score, score_text, write_prf

    res, info = score(pred_dir, gt_dir, data, split, protocol)
    if prf and warn(write_prf(res, prf) or ""):
        prf = None
    click.echo(json.dumps({**res.to_json(), **info}) if as_json else score_text(res, info, prf))


@cli.command()
@click.argument("source", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: new, empty, or an earlier predict output (it holds predict.json).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threshold", type=float,
              help="Probability T: mask = value/255 > T (default: a run folder's ODS threshold, else the saved "
                   "predict.threshold).")
@click.option("--mode", type=click.Choice(["auto", "resize", "tile"]), help="Large images: tile or resize.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Model windows per forward pass (default: the run's predict.batch_size); 1 takes the least memory.")
@click.option("--recursive", is_flag=True,
              help="Also predict the photos in sub-folders; their outputs go to the same sub-folders of OUT.")
@click.option("--strict", is_flag=True,
              help="Stop at the first photo that cannot be read (exit status 2) instead of listing it and going on.")
@click.option("--measure", "do_measure", is_flag=True,
              help="Also measure the cracks (OUT/measurements/; with --recursive, in each sub-folder of OUT).")
@measure_options
@click.option("-q", "--quiet", is_flag=True)
def predict(source: str, images: tuple[str, ...], out: str, device: str, threshold: float | None,
            mode: str | None, batch_size: int | None, recursive: bool, strict: bool, do_measure: bool,
            px_per_mm: float | None, min_area: int, travel: str, quiet: bool) -> None:
    """Apply a finished run (RUN_DIR, its model.pt or checkpoint.pt, or an exported MODEL.onnx) to photos of any
    size; prints the threshold used and why.

    Writes OUT/NAME.png (the mask), OUT/prob/NAME.png and OUT/overlay/NAME.png for each photo. A photo that
    cannot be read (corrupt, truncated, not really an image) does not stop the others: the failures are
    printed and listed in OUT/failures.csv (path,reason; removed by a rerun in which every photo is read).

    \b
    Exit status:
      0  every photo was written
      2  a mistake in the input: nothing predicted (with --strict: a bad photo)
      3  some photos could not be read (OUT/failures.csv); the others were written
    """
    from crackseg.apps.measure import MEASURE_MARKER
    from crackseg.base.out_folder import check_out_folder
    from crackseg.prediction.predict_folder import SOME_PHOTOS_FAILED, failure_lines, predict_paths, summary_line

    opt = MeasureOptions(px_per_mm=px_per_mm, min_area=min_area, travel=travel)  # checked before predicting
    if do_measure:
        check_out_folder(Path(out) / "measurements", command="measure", marker=MEASURE_MARKER)
    res = predict_paths(source, images, out, device=device, threshold=threshold, mode=mode, batch_size=batch_size,
                        quiet=quiet, log=click.echo, recursive=recursive, strict=strict)
    for line in failure_lines(res):
        click.echo(line, err=True)
    click.echo(summary_line(res))
    if do_measure and res.written:
        click.echo(_measure_predictions(res.written, res.sources, Path(out), opt, quiet))
    if res.failed:
        raise click.exceptions.Exit(SOME_PHOTOS_FAILED)


def _measure_predictions(masks: list[Path], photos: list[Path], out: Path, opt: MeasureOptions, quiet: bool) -> str:
    """``predict --measure``: measure each folder of masks into its measurements/; the summary lines."""
    from crackseg.apps.measure import measure_folder, measure_summary

    folders: dict[Path, dict[str, Path]] = {}
    for mask, photo in zip(masks, photos):
        folders.setdefault(mask.parent, {})[mask.stem] = photo
    if len(folders) == 1:
        folder, backgrounds = next(iter(folders.items()))
        return measure_and_summarise(folder, folder / "measurements", opt, images=backgrounds, quiet=quiet)
    instances, measured = [], []
    for folder, backgrounds in folders.items():
        inst, meas = measure_folder(folder, folder / "measurements", opt, images=backgrounds, quiet=quiet)
        instances += inst
        measured += meas
    counts = measure_summary(instances, measured, opt, out).splitlines()[0]
    return f"{counts}\nwrote measurements/ (instances.csv, images.csv, measurements.json, overlays/) in each of " \
           f"the {len(folders)} folders of masks under {out}"


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: new, empty, or an earlier measure output (it holds measurements.json; "
                   "replaced).")
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
    click.echo(measure_and_summarise(source, out, opt, images=images, quiet=quiet))


@cli.command()
@click.argument("source", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Model format.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The .onnx file to write.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version (14-23).")
@click.option("--dynamic", is_flag=True, help="Any input height and width (default: the run's window size).")
@click.option("--fp16", is_flag=True, help="Half-precision weights and arithmetic (float32 in and out; half the size).")
@click.option("--int8", is_flag=True,
              help="Quantise to int8 (a RUN_DIR: calibrated on its training images; prints its speed and its ODS "
                   "and mask changes on the run's test images).")
@click.option("--calibration", type=int, metavar="N", help="--int8: training windows to calibrate on (default 32).")
@click.option("--check-images", type=int, metavar="N",
              help="--int8: test images to compare the int8 and fp32 masks on (default 8; 0: speed only).")
def export(source: str, fmt: str, out: str, opset: int, dynamic: bool, fp16: bool, int8: bool,
           calibration: int | None, check_images: int | None) -> None:
    """Export a finished run's backbone (RUN_DIR or CHECKPOINT) for deployment without PyTorch."""
    from crackseg.apps.export import export_onnx

    res = export_onnx(source, out, opset=opset, dynamic=dynamic, fp16=fp16, int8=int8, calibration=calibration,
                      check_images=check_images)
    sizes = " and ".join(f"{s}x{s}" for s in res.sizes)
    click.echo(f"wrote {res.path} ({res.path.stat().st_size / 2**20:.1f} MiB, {res.exporter} exporter, opset {opset}"
               f"{', fp16' if fp16 else ', int8' if int8 else ''}); "
               f"{'its fp32 graph ' if int8 else ''}matches the torch model to {res.max_diff:.1e} at {sizes}")
    for line in res.lines():  # the parity figures, the recorded threshold, --int8's checks
        click.echo(line)
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


@cli.command()
@click.option("--labeler", required=True, help="Pseudo-labeler name (crackseg list labelers).")
@click.option("--data", required=True, help="Dataset name or folder path.")
@click.option("--split", default="train", show_default=True, help="Which split to label.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for <stem>.png labels.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with labeler: and data: sections.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="e.g. labeler.threshold=0.4")
@click.option("--wait", is_flag=True,
              help="When another `label` is writing to --out, wait for it to end (default: stop).")
@click.option("-q", "--quiet", is_flag=True)
def label(**kw: Any) -> None:
    """Write pseudo-labels (DIR/<stem>.png, 0/255) and soft maps (DIR/soft/) for a dataset split."""
    from crackseg.apps.label import label_split

    done = label_split(**kw)
    if done.is_main:
        click.echo(f"wrote {done.count} pseudo-labels to {kw['out']} (soft maps in {Path(kw['out']) / 'soft'})")


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
              help="How F is pooled over the images (see docs/guides/metrics.md).")
@click.option("--prune-every", type=click.IntRange(min=1), default=None,
              help="Images between intermediate scores for pruning (default: a fifth of them).")
@click.option("--no-prune", is_flag=True, help="Score every trial on every image (no early stopping).")
@click.option("--tolerance", type=float, default=None, metavar="F",
              help="Keep a parameter at its default unless changing it gains more than F on the annotated "
                   "images (default 0.01; -1 keeps the best trial as it is).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), help="Start no trial after this many seconds.")
@click.option("--shared-dir", type=click.Path(file_okay=False),
              help="Cache of what the labeler trains (default: next to the study); `run --set shared_dir=` reuses it.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with labeler: and data: sections.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Fix a parameter (not searched), e.g. labeler.iterations=5, or set data keys.")
@click.option("--wait", is_flag=True,
              help="When another `tune` is working on the study, wait for it to end (default: stop).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines (the result is still printed).")
def tune(quiet: bool, **kw: Any) -> None:
    """Calibrate a labeler on a few annotated images: search its parameters for the best pseudo-label F.

    Writes OUT, a config layer with the best parameters for `run`, `label` and `compare`
    (--config OUT). The study is kept in a SQLite file: rerunning the same command continues it.
    """
    from crackseg.apps.tune_setup import TuneOptions, result_text, run_study, tune_setup, write_layer

    opts = TuneOptions(**kw)
    setup = tune_setup(opts, quiet)  # every check before any work
    try:
        result = run_study(setup, opts, quiet)
    except KeyboardInterrupt:
        click.echo(f"crackseg: interrupted; finished trials are kept in {setup.study_path}: rerun the same "
                   f"command to continue", err=True)
        raise click.exceptions.Exit(130) from None
    write_layer(setup, result, opts)
    text, warning = result_text(setup, result)
    click.echo(text)
    warn(warning)
    click.echo(f"wrote {opts.out}; use it: crackseg run --config {opts.out} ...")


def command_run_config(options: dict[str, Any], precision: str | None = None) -> Any:
    """:func:`crackseg.config.assembly.command_run_config`, imported when a command builds a run configuration."""
    from crackseg.config.assembly import command_run_config as run_config

    return run_config(options, precision)


def __getattr__(name: str) -> Any:
    if name == "build_config":  # the old name of run_config_from_options (tests import it)
        from crackseg.config.assembly import run_config_from_options

        return run_config_from_options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        click.echo(error_line(str(exc)), err=True)
        sys.exit(exc.exit_code)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in _HEAVY_PACKAGES:
            raise
        click.echo(error_line(f"this needs the {top!r} package, which is not installed; pip install 'crackseg[all]' "
                              f"installs every optional dependency"), err=True)
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # "continue with --resume" only where the interrupted command has that option
        command = cli.commands.get(next((a for a in args if not a.startswith("-")), ""))
        resumable = command is not None and any("--resume" in getattr(p, "opts", ()) for p in command.params)
        click.echo("crackseg: interrupted" + (" (continue with --resume)" if resumable else ""), err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other user error
        where = f"crackseg {exc.ctx.command_path.split(' ', 1)[1]} --help" if exc.ctx and " " in exc.ctx.command_path \
            else "crackseg --help"
        click.echo(error_line(f"{exc.format_message()} (see {where})"), err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # a full disk, a read-only folder, ... that no writer named: still one line
        stored = storage_error(exc)
        if stored is None:
            raise
        if show_traceback:
            traceback.print_exception(exc, file=sys.stderr)
        click.echo(error_line(str(stored)), err=True)
        sys.exit(stored.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
