"""The ``crackseg train-classifier`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import crackseg
from crackseg import ConfigError, CracksegError, data_spec, parse_set


def resolve_dataset(data: str) -> Any:
    """``DATA`` is a registered dataset name or a folder that a dataset plugin reads."""
    if Path(data).is_file():
        raise CracksegError(f"{data}: --data must be a dataset name or a folder, not a file")
    spec = data_spec(data)
    return crackseg.create_dataset(spec.pop("name"), **spec)


def pick_split(dataset: Any, split: str | None) -> str:
    """The requested split, else ``train`` when present, else ``all``, else the first one."""
    splits = list(dataset.splits())
    if split:
        return split
    for name in ("train", "all"):
        if name in splits:
            return name
    if not splits:
        raise CracksegError(f"dataset {getattr(dataset, 'name', '?')!r} has no splits")
    return splits[0]


def parse_sets(items: tuple[str, ...]) -> dict[str, Any]:
    """``--set classifier.key=value`` (the ``classifier.`` prefix is optional) → dict of values."""
    prefixed = [i if i.startswith("classifier.") or "=" not in i else f"classifier.{i}" for i in items]
    values = parse_set(prefixed)
    other = sorted(set(values) - {"classifier"})
    nested = [k for k, v in (values.get("classifier") or {}).items() if isinstance(v, dict)]
    if other or nested:
        raise ConfigError(f"--set: only classifier.KEY=VALUE settings apply to train-classifier "
                          f"(got {(other or nested)[0]!r})")
    return dict(values.get("classifier") or {})


def register(cli: Any) -> None:
    """Add ``train-classifier`` to the click group ``cli``."""
    import click

    @cli.command("train-classifier")
    @click.option("--data", "data", required=True, help="dataset name or folder (images/ masks/ splits/)")
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="output folder")
    @click.option("--split", default=None, help="split to train on (default: train, else all)")
    @click.option("--arch", default=None, help="classifier architecture (resnet50, resnet18, timm:<name>)")
    @click.option("--epochs", type=int, default=None, help="number of epochs (paper: 10)")
    @click.option("--weak-labels", "weak_labels", default=None, type=click.Path(dir_okay=False),
                  help="CSV of weak labels: stem,x,y,size,label or stem,label")
    @click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda")
    @click.option("--resume", is_flag=True, help="continue an unfinished checkpoint in --out")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--set", "sets", multiple=True, help="classifier.KEY=VALUE (repeatable)")
    @click.option("--quiet", is_flag=True, help="no progress output")
    def train_classifier_cmd(data: str, out: str, split: str | None, arch: str | None, epochs: int | None,
                             weak_labels: str | None, device: str, resume: bool, seed: int,
                             sets: tuple[str, ...], quiet: bool) -> None:
        """Train the binary crack/no-crack patch classifier used by the CAM labelers.

        Writes OUT/classifier.pt (use it: --set labeler.classifier.checkpoint=OUT/classifier.pt) and
        OUT/classifier.metrics.json (held-out patch accuracy, precision, recall, F1).
        """
        from crackseg import write_text

        from .classifier import classifier_config, metrics_path, resolve_device, train_classifier

        values = parse_sets(sets)
        if arch is not None:
            values["arch"] = arch
        if epochs is not None:
            values["epochs"] = epochs
        if weak_labels is not None:
            values["weak_labels"] = weak_labels
        cfg = classifier_config(values)

        dev = resolve_device(device, crackseg.detect_distributed())
        dataset = resolve_dataset(data)
        samples = dataset.samples(pick_split(dataset, split))
        if not samples:
            raise CracksegError(f"--data {data}: no images in the chosen split")
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / "classifier.pt"
        if ckpt.exists() and not resume:
            raise CracksegError(f"{ckpt} exists; pass --resume to continue it or choose another --out")
        import yaml


        env = crackseg.detect_distributed()  # under torchrun: DistributedDataParallel over the ranks
        crackseg.init_distributed(env, dev)
        if env.is_main:
            settings = yaml.safe_dump({"classifier": crackseg.dataclass_to_dict(cfg)}, sort_keys=False)
            write_text(out_dir / "classifier.yaml", settings)
        train_classifier(samples, cfg, ckpt, dev, seed=seed, resume=resume, quiet=quiet, settings="classifier")
        if not env.is_main:
            return
        m = metrics_path(ckpt)
        if m.exists():
            import json

            metrics = json.loads(m.read_text())
            click.echo(f"classifier: {ckpt}  ({metrics.get('evaluated_on')}: accuracy {metrics['accuracy']:.4f} "
                       f"precision {metrics['precision']:.4f} recall {metrics['recall']:.4f} F1 {metrics['f1']:.4f})")
        else:
            click.echo(f"classifier: {ckpt}")
