"""The ``crackseg`` command line.

Built-in commands are defined here; plugins add more through the
``register_commands`` hook. Plugins are loaded only when a command needs them,
so ``crackseg evaluate`` starts without importing torch. A user error prints
one line (``crackseg: error: ...``) and exits with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from .errors import CracksegError

KIND_CHOICES = ("labelers", "backbones", "prompts", "losses", "datasets")


class CracksegGroup(click.Group):
    """Adds plugin commands lazily: built-ins resolve without loading any plugin."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not CracksegGroup._plugins_added:
            CracksegGroup._plugins_added = True
            from .plugins import get_manager

            get_manager().add_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str):  # type: ignore[override]
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

    \b
    Quick start:
      crackseg run                                   # fsv + unet on synthetic data
      crackseg run --labeler cam-location --backbone crackclip --data PATH
      crackseg predict runs/RUN photos/ --out masks/
      crackseg evaluate PRED_DIR GT_DIR --json
    """


# -- shared run options ---------------------------------------------------------
def run_options(f):
    opts = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file."),
        click.option("--labeler", help="Pseudo-labeler name (crackseg list labelers)."),
        click.option("--backbone", help="Segmentation backbone name (crackseg list backbones)."),
        click.option("--prompts", help="Prompt set name or YAML file (vision-language backbones)."),
        click.option("--loss", help="Loss, e.g. 'focal+dice+edge' (default: the backbone's own)."),
        click.option("--data", help="Dataset name (crackseg list datasets) or a folder path."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to compute."),
        click.option("--seed", type=int, help="Random seed."),
        click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/<labeler>-<backbone>-<data>)."),
        click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. train.epochs=3."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def build_config(config_file: str | None, labeler: str | None, backbone: str | None, prompts: str | None,
                 loss: str | None, data: str | None, device: str | None, seed: int | None,
                 out: str | None, sets: tuple[str, ...]):
    from .config import data_spec, load_yaml, parse_set, resolve_config

    layers: list[dict[str, Any]] = []
    if config_file:
        layers.append(load_yaml(config_file))
    flags: dict[str, Any] = {}
    if labeler:
        flags["labeler"] = {"name": labeler}
    if backbone:
        flags["backbone"] = {"name": backbone}
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
    if prompts:
        layers.append({"backbone": {"prompts": prompts}})
    try:
        return resolve_config(layers)
    except CracksegError as exc:
        if prompts and "prompts" in str(exc) and "unknown" in str(exc):
            raise CracksegError(f"--prompts: the selected backbone does not use prompts ({exc})") from None
        raise


@cli.command()
@run_options
@click.option("--precision", type=click.Choice(["32", "16-mixed", "bf16-mixed"]),
              help="Mixed precision on CUDA (ignored on CPU).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes on this machine (starts torchrun; each uses one GPU on CUDA).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines (the table is still printed).")
def run(precision: str | None, resume: bool, nproc: int, quiet: bool, **kw: Any) -> None:
    """Train a backbone on pseudo-labels, predict the test split, evaluate.

    Under torchrun (or with --nproc N) training uses DistributedDataParallel; the
    batch size stays the global one.
    """
    if precision:
        kw["sets"] = tuple(kw["sets"]) + (f"train.precision={precision}",)
    cfg = build_config(**kw)
    if nproc > 1:
        from .distributed import launch_local

        if not cfg.out:
            from .runner import default_out

            cfg.out = default_out(cfg)
        launch_local(nproc, _argv_without_nproc(), out=cfg.out)
        return
    from .runner import run as do_run

    do_run(cfg, resume=resume, quiet=quiet)


def _argv_without_nproc() -> list[str]:
    """This process's ``crackseg`` arguments minus ``--nproc N``."""
    args = sys.argv[1:]
    out, skip = [], False
    for a in args:
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
    from .config import to_yaml

    cfg = build_config(**kw)
    if not cfg.out:
        from .runner import default_out

        cfg.out = default_out(cfg)
    click.echo(to_yaml(cfg), nl=False)


@cli.command()
def plugins() -> None:
    """List installed plugins and what each registered."""
    from .plugins import get_manager

    m = get_manager()
    for name, info in sorted(m.info.items()):
        version = f" {info.version}" if info.version else ""
        dist = f" ({info.distribution}{version})" if info.distribution else ""
        click.echo(f"{name}{dist}")
        if info.error:
            click.echo(f"  ERROR: {info.error}")
        for kind, names in sorted(info.registered.items()):
            click.echo(f"  {kind}: {', '.join(names)}")


@cli.command("list")
@click.argument("kind", type=click.Choice(KIND_CHOICES))
@click.argument("pattern", default="*")
def list_cmd(kind: str, pattern: str) -> None:
    """List registered labelers, backbones, prompts, losses or datasets (PATTERN: shell wildcards)."""
    from .plugins import registry

    reg = registry(kind)
    names = reg.names(pattern)
    if not names:
        raise CracksegError(f"no {kind} match {pattern!r} (available: {', '.join(reg.names()) or 'none'})")
    width = max(len(n) for n in names)
    for n in names:
        e = reg.get(n)
        params = ", ".join(f"{k}={v!r}" for k, v in e.param_defaults().items())
        click.echo(f"{n:<{width}}  {e.description}  [{e.plugin}]")
        if params:
            click.echo(f"{'':<{width}}    params: {params}")


@cli.command()
@click.argument("pred_dir", type=click.Path())
@click.argument("gt_dir", type=click.Path())
@click.option("--protocol", type=click.Choice(["crackclip", "paper"]), default="crackclip", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (ods, ois, ap, n, ...).")
@click.option("--prf", type=click.Path(dir_okay=False), help="Per-threshold P/R/F table (default PRED_DIR/prf.tsv).")
def evaluate(pred_dir: str, gt_dir: str, protocol: str, as_json: bool, prf: str | None) -> None:
    """Score probability maps (uint8 PNG, value/255) against ground-truth masks, paired by file stem."""
    from .metrics import evaluate_dirs, write_prf_table

    res = evaluate_dirs(pred_dir, gt_dir, protocol)
    prf_path = Path(prf) if prf else Path(pred_dir) / "prf.tsv"
    try:
        write_prf_table(res, prf_path)
    except OSError as exc:
        raise CracksegError(f"{prf_path}: cannot write the P/R/F table ({exc.strerror}); pass --prf PATH") from None
    if as_json:
        click.echo(json.dumps(res.to_json()))
    else:
        click.echo(f"protocol {protocol}, {res.n} images")
        click.echo(f"ODS {100 * res.ods:.2f}  OIS {100 * res.ois:.2f}  AP {100 * res.ap:.2f}  (%)")
        click.echo(f"P/R/F per threshold: {prf_path}")


@cli.command()
@click.argument("source", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threshold", type=float, help="Probability for the binary mask (default: the run's).")
@click.option("--mode", type=click.Choice(["auto", "resize", "tile"]), help="Large images: tile or resize.")
@click.option("-q", "--quiet", is_flag=True)
def predict(source: str, images: tuple[str, ...], out: str, device: str, threshold: float | None,
            mode: str | None, quiet: bool) -> None:
    """Apply a finished run (RUN_DIR or CHECKPOINT) to photos of any size."""
    from .predict import predict_paths

    written = predict_paths(source, images, out, device=device, threshold=threshold, mode=mode, quiet=quiet)
    click.echo(f"wrote {len(written)} masks to {out} (probabilities in {Path(out) / 'prob'}, overlays in {Path(out) / 'overlay'})")


@cli.command()
@click.option("--labeler", required=True, help="Pseudo-labeler name (crackseg list labelers).")
@click.option("--data", required=True, help="Dataset name or folder path.")
@click.option("--split", default="train", show_default=True, help="Which split to label.")
@click.option("--classifier", type=click.Path(dir_okay=False), help="Patch-classifier checkpoint (else one is trained).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder for <stem>.png labels.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML with labeler:/classifier: sections.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="e.g. labeler.threshold=0.4, classifier.epochs=2")
@click.option("-q", "--quiet", is_flag=True)
def label(labeler: str, data: str, split: str, classifier: str | None, out: str, device: str, seed: int,
          config_file: str | None, sets: tuple[str, ...], quiet: bool) -> None:
    """Write pseudo-labels (DIR/<stem>.png, 0/255) and soft maps (DIR/soft/) for a dataset split."""
    from . import create_dataset, create_labeler, get_entry, validate_params
    from .config import data_spec, deep_merge, load_yaml, parse_set
    from .distributed import detect, init, resolve_device
    from .label_stage import run_label_stage
    from .labeling import LabelContext

    raw = load_yaml(config_file) if config_file else {}
    raw = deep_merge(raw, parse_set(list(sets)))
    unknown = sorted(set(raw) - {"labeler", "classifier", "data"})
    if unknown:
        raise CracksegError(f"config key {unknown[0]!r} is not used by `crackseg label` (valid: labeler, classifier, data)")
    entry = get_entry("labelers", labeler)
    lparams = {k: v for k, v in (raw.get("labeler") or {}).items() if k != "name"}
    params = validate_params(entry, lparams, "labeler")
    dspec = deep_merge(data_spec(data), raw.get("data") or {})
    dname = dspec.pop("name")
    dataset = create_dataset(dname, **dspec)
    samples = dataset.samples(split)
    env = detect()
    dev = resolve_device(device, env)
    init(env, dev)
    lab = create_labeler(labeler, **params)
    ctx = LabelContext(device=dev, work_dir=Path(out) / ".labeler", seed=seed, quiet=quiet,
                       classifier=classifier, classifier_config=dict(raw.get("classifier") or {}))
    from .runner import prepare_labeler

    prepare_labeler(lab, samples, ctx, env)
    files = run_label_stage(lab, samples, Path(out), ctx, env)
    if env.is_main:
        click.echo(f"wrote {len(files)} pseudo-labels to {out} (soft maps in {Path(out) / 'soft'})")


def _add_compare() -> None:
    from .compare_cmd import compare  # light: the grid logic is imported when the command runs

    cli.add_command(compare)


_add_compare()


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors with exit status 2 for user errors."""
    try:
        cli.main(args=argv, prog_name="crackseg", standalone_mode=False)
    except CracksegError as exc:
        click.echo(f"crackseg: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("crackseg: interrupted (continue with --resume)", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("crackseg: interrupted (continue with --resume)", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()
