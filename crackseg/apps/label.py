"""``crackseg label``: write a labeler's pseudo-labels (``<stem>.png``, 0/255) and soft maps for a dataset split.

The labeler is prepared as a run prepares it (:func:`crackseg.labels.preparation.prepare`), with
its artefacts under ``OUT/.labeler/``; under torchrun every rank takes part and the main rank writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crackseg.base.distributed import detect, init, resolve_device
from crackseg.base.locks import hold
from crackseg.config.assembly import labeler_layers
from crackseg.config.run_config import resolve_data_section, resolve_section
from crackseg.data.loading import load_samples
from crackseg.labels.contract import declared_artefacts
from crackseg.labels.factory import create_labeler
from crackseg.labels.preparation import prepare
from crackseg.labels.pseudo_labels import write_pseudo_labels


@dataclass
class Labelled:
    """What :func:`label_split` wrote."""

    #: pseudo-labels written (by this process)
    count: int
    #: whether this process is the main one (the one that reports)
    is_main: bool


def label_split(labeler: str, data: str, split: str, out: str | Path, *, device: str = "auto", seed: int = 0,
                config_file: str | None = None, sets: tuple[str, ...] = (), quiet: bool = False,
                wait: bool = False) -> Labelled:
    """Label ``split`` of ``data`` with ``labeler`` into ``out`` (the ``label`` command's options, see its help).

    ``--config`` and ``--set`` may hold ``labeler:`` and ``data:`` keys
    (:func:`crackseg.config.assembly.labeler_layers`); every check runs before the labeler is built.
    ``out`` is held meanwhile: another ``label`` into it is refused, naming this one (``wait``: queues).
    """
    raw = labeler_layers("label", labeler, data, config_file, sets)
    lab_section = resolve_section("labelers", raw["labeler"], "labeler")
    data_section = resolve_data_section(raw["data"])
    samples = load_samples(data_section, split)
    env = detect()
    dev = resolve_device(device, env)
    init(env, dev)
    lab = create_labeler(labeler, **{k: v for k, v in lab_section.items() if k != "name"})
    work = Path(out) / ".labeler"
    with hold(out, "labelling", wait=wait, enabled=env.is_main):
        ctx = prepare(lab, samples, name=labeler, device=dev, work_dir=work, seed=seed, quiet=quiet, env=env,
                      artefact_dirs={name: work / name for name in declared_artefacts(lab)})
        files = write_pseudo_labels(lab, samples, Path(out), ctx, env, name=labeler)
    return Labelled(count=len(files), is_main=env.is_main)
