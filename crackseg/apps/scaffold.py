"""``crackseg new-plugin``: write a ready plugin package (pyproject with the entry point, module, tests, README).

The generated tests use crackseg's plugin contracts (``crackseg.LabelerContract``, ...) and pass as generated once the
package is installed (``pip install -e .``); a backbone's tests also train it in a small run.
"""

from __future__ import annotations

import re
from pathlib import Path

from crackseg.base.errors import CracksegError
from crackseg.base.io import write_text

KINDS: tuple[str, ...] = ("backbone", "labeler", "loss", "prompts", "dataset", "trainer", "command")

_NEEDS_TORCH = {"backbone", "loss", "trainer"}

_MODULE: dict[str, str] = {
    "backbone": '''
@dataclass
class {Camel}Params:
    """Every field is a config key: backbone.width in YAML, --set backbone.width=16."""

    #: channels of the hidden layer
    width: int = 8


def build(width: int) -> Any:
    """A two-layer CNN: [B,3,H,W] -> crack logits [B,1,H,W], any input size."""
    import torch  # heavy imports inside the factory keep `crackseg --help` fast

    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(width, 1, 3, padding=1),
    )


@crackseg.hookimpl
def register_backbones(register: Any) -> None:
    register("{name}", build, params={Camel}Params, description="a two-layer CNN ({dist})")
''',
    "labeler": '''
@dataclass
class {Camel}Params:
    """Every field is a config key: labeler.sigma in YAML, --set labeler.sigma=1.5."""

    #: a pixel is crack when it is darker than the image mean by this many standard deviations
    sigma: float = 2.0


class {Camel}Labeler:
    """Dark pixels as pseudo-labels; nothing to train."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    def prepare(self, train: Any, context: Any) -> None:
        """Nothing to train or load (a labeler with a model declares it with artefacts())."""

    def label(self, samples: Any, context: Any) -> list[Any]:
        import numpy as np

        from crackseg import PseudoLabel

        out = []
        for s in samples:
            grey = s.load_image().mean(axis=2)
            depth = (grey.mean() - grey) / (grey.std() + 1e-6)
            soft = np.clip(depth / (2 * self.sigma), 0.0, 1.0).astype(np.float32)
            out.append(PseudoLabel(soft=soft, binary=depth > self.sigma))
        return out

    def fingerprint(self) -> str:
        return f"{name}-v1:sigma={{self.sigma}}"  # changes whenever the labels would


@crackseg.hookimpl
def register_labelers(register: Any) -> None:
    register("{name}", {Camel}Labeler, params={Camel}Params, description="dark pixels as labels ({dist})")
''',
    "loss": '''
@dataclass
class {Camel}Params:
    """Every field is a config key: loss_params.{name}.power in YAML."""

    #: exponent of the per-pixel error
    power: float = 1.0


def build(power: float) -> Any:
    """Mean |sigmoid(logits) - target| ** power."""

    def loss(logits: Any, target: Any) -> Any:
        return ((logits.sigmoid() - target).abs() ** power).mean()

    return loss


@crackseg.hookimpl
def register_losses(register: Any) -> None:
    register("{name}", build, params={Camel}Params, description="mean absolute error on probabilities ({dist})")
''',
    "prompts": '''
@dataclass
class {Camel}Params:
    """Every field is a config key of the prompt set."""

    #: the surface the sentences talk about
    object: str = "concrete wall"


class {Camel}Prompts:
    def __init__(self, object: str) -> None:  # noqa: A002 - the config key is "object"
        self.object = object

    def sentences(self) -> dict[str, list[str]]:
        o = self.object
        return {{
            "normal": [f"a photo of a flawless {{o}}.", f"a photo of a smooth {{o}}."],
            "crack": [f"a photo of a {{o}} with a crack.", f"a photo of a fractured {{o}}."],
        }}


@crackseg.hookimpl
def register_prompt_sets(register: Any) -> None:
    register("{name}", {Camel}Prompts, params={Camel}Params, description="two sentences per class ({dist})")
''',
    "dataset": '''
@dataclass
class {Camel}Params:
    """Every field is a config key: data.root in YAML, --set data.root=PATH."""

    #: a folder of <stem>.jpg images with <stem>_label.png masks
    root: str = field(default="", metadata={{"path": "folder"}})


def build(root: str) -> Any:
    """Every image of ``root`` in split ``all``; its ``<stem>_label.png`` is its mask."""
    from pathlib import Path

    from crackseg import DataError, ListDataset, file_sample, images_by_stem

    folder = Path(root)
    if not root or not folder.is_dir():
        raise DataError(f"{{root or '(empty)'}}: dataset folder not found (set data.root)")
    images = {{s: p for s, p in images_by_stem(folder).items() if not s.endswith("_label")}}
    samples = [file_sample(p, folder / f"{{s}}_label.png" if (folder / f"{{s}}_label.png").is_file() else None)
               for s, p in images.items()]
    return ListDataset("{name}", {{"all": samples}})


@crackseg.hookimpl
def register_datasets(register: Any) -> None:
    register("{name}", build, params={Camel}Params, description="<stem>.jpg + <stem>_label.png ({dist})")
''',
    "trainer": '''
@dataclass
class {Camel}Params:
    """Every field is a config key: trainer.crack_weight in YAML, --set trainer.crack_weight=3."""

    #: weight of crack pixels in the loss (background pixels weigh 1)
    crack_weight: float = 2.0


class {Camel}Trainer:
    """Supervised training with crack pixels weighted more, on crackseg's engine."""

    def __init__(self, crack_weight: float) -> None:
        self.crack_weight = crack_weight

    def fit(self, job: Any) -> Any:
        from crackseg import (BinaryLabels, SegmentationTrainSet, TrainForward, check_batch, collate, forward_outputs,
                              input_stats, size_multiple, start_training)

        engine, cfg = job.engine, job.config
        started = start_training(job)  # seed, optimizer, scheduler, resume
        if started is None:  # a finished run (or nothing trainable): nothing to train
            return engine.result()
        optimizer, scheduler = started
        params = engine.trainable()
        data = SegmentationTrainSet(job.samples, BinaryLabels(job.labels), job.image_size, cfg,
                                    *input_stats(job.model), job.seed, dataset=job.dataset)
        loader = engine.loader(data, cfg.batch_size, collate_fn=collate)
        net = engine.wrap(TrainForward(engine.model))
        for epoch in engine.epochs():
            total, count = 0.0, 0
            for batch in engine.progress(loader):
                x, y, keys = check_batch(batch)
                x, y = x.to(engine.device), y.to(engine.device)
                with engine.autocast():
                    outs = forward_outputs(net, x, keys, size_multiple(job.model), job.backbone)
                loss = job.loss(outs, y, weight=1.0 + (self.crack_weight - 1.0) * y)
                engine.backward_step(loss, optimizer, params, images=x.shape[0])
                total, count = total + float(loss) * x.shape[0], count + x.shape[0]
                if engine.should_stop():
                    break
            if scheduler is not None:
                scheduler.step()
            engine.end_epoch(epoch, {{"loss": engine.mean_across(total, count)}}, optimizer, scheduler)
        return engine.result()


@crackseg.hookimpl
def register_trainers(register: Any) -> None:
    register("{name}", {Camel}Trainer, params={Camel}Params, description="crack pixels weighted more ({dist})")
''',
    "command": '''
@crackseg.hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command("{name}")
    @click.option("--kind", default="backbones", show_default=True, help="Which registry to count.")
    def {func}(kind: str) -> None:
        """Count the registered components of one kind."""
        click.echo(f"{{len(crackseg.list_components(kind))}} {{kind}}")
''',
}

_TESTS: dict[str, str] = {
    "backbone": '''
from crackseg import BackboneContract, main, write_tiny_dataset


class Test{Camel}(BackboneContract):
    name = "{name}"
    params = {{"width": 4}}


def test_trains_in_a_run(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    try:
        main(["run", "--backbone", "{name}", "--data", str(data), "--device", "cpu", "--quiet",
              "--set", "train.epochs=1", "--set", "train.batch_size=2", "--out", str(tmp_path / "run")])
    except SystemExit as exc:  # main exits only on an error
        raise AssertionError(f"crackseg run failed (exit status {{exc.code}})") from None
    assert (tmp_path / "run" / "metrics.json").is_file()
''',
    "labeler": '''
from crackseg import LabelerContract


class Test{Camel}(LabelerContract):
    name = "{name}"
    changed_params = {{"sigma": 1.0}}
''',
    "loss": '''
from crackseg import LossContract


class Test{Camel}(LossContract):
    name = "{name}"
''',
    "prompts": '''
from crackseg import PromptSetContract


class Test{Camel}(PromptSetContract):
    name = "{name}"
''',
    "dataset": '''
import numpy as np

from crackseg import DatasetContract, write_png


class Test{Camel}(DatasetContract):
    name = "{name}"

    def make_params(self, tmp_path):
        for i in range(3):
            image = np.full((24, 32, 3), 150, np.uint8)
            mask = np.zeros((24, 32), np.uint8)
            mask[10:12] = 255
            image[mask > 0] = 40
            write_png(tmp_path / f"img{{i}}.png", image)
            write_png(tmp_path / f"img{{i}}_label.png", mask)
        return {{"root": str(tmp_path)}}
''',
    "trainer": '''
from crackseg import TrainerContract


class Test{Camel}(TrainerContract):
    name = "{name}"
    params = {{"crack_weight": 3.0}}
''',
    "command": '''
import crackseg


def test_the_command_runs(capsys):
    crackseg.main(["{name}", "--kind", "losses"])  # exits (SystemExit) only on an error
    assert capsys.readouterr().out.strip().endswith("losses")
''',
}

_USE: dict[str, str] = {
    "backbone": "crackseg run --backbone {name} --set backbone.width=16",
    "labeler": "crackseg run --labeler {name} --set labeler.sigma=1.5",
    "loss": "crackseg run --loss {name}             # alone, or weighted in a sum: --loss 'other+0.5*{name}'",
    "prompts": "crackseg list prompts {name}        # then --prompts {name} with a vision-language backbone",
    "dataset": "crackseg run --set data.name={name} --set data.root=PATH --set data.train_split=all "
               "--set data.test_split=all",
    "trainer": "crackseg run --trainer {name} --set trainer.crack_weight=3",
    "command": "crackseg {name} --kind losses",
}


def name_taken(name: str) -> str:
    """What already has ``name`` among the installed plugins and their components (of any kind), or ``""``.

    The generated package registers a component and an entry point named ``name``: either would be
    refused (or skipped) next to one of the same name.
    """
    from crackseg.plugins import KINDS as COMPONENT_KINDS
    from crackseg.plugins import SINGULAR, get_manager, registry

    manager = get_manager()
    if name in manager.info:
        return manager.info[name].describe()
    for kind in COMPONENT_KINDS:
        entry = registry(kind).entry(name)
        if entry is not None:
            return f"the {SINGULAR[kind]} of {entry.describe_plugin()}"
    return ""


def new_plugin(name: str, kind: str, out: str | Path) -> Path:
    """Write the package ``crackseg-<name>`` into ``out``; returns its folder. Nothing is overwritten."""
    if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", name):
        raise CracksegError(f"new-plugin {name!r}: use lower-case letters, digits and single hyphens (e.g. my-net)")
    if kind not in KINDS:
        raise CracksegError(f"new-plugin --kind {kind!r}: choose from {', '.join(KINDS)}")
    taken = name_taken(name)
    if taken:
        raise CracksegError(f"new-plugin {name!r}: the name is taken by {taken}; choose another, e.g. my-{name}")
    dist = f"crackseg-{name}"
    module = f"crackseg_{name.replace('-', '_')}"
    root = Path(out) / dist
    if root.exists():
        raise CracksegError(f"{root} already exists; choose another --out or name")
    camel = "".join(part.capitalize() for part in name.split("-"))
    fmt = {"name": name, "dist": dist, "module": module, "Camel": camel, "func": name.replace("-", "_")}
    head = f'"""{dist}: a crackseg {kind} plugin (written by `crackseg new-plugin`)."""\n\n' \
           "from __future__ import annotations\n\n"
    dataclasses = {"dataset": "from dataclasses import dataclass, field\n", "command": ""}
    imports = dataclasses.get(kind, "from dataclasses import dataclass\n") + \
        "from typing import Any\n\nimport crackseg\n"
    requires = ""
    if kind in _NEEDS_TORCH:
        requires = ('\n#: what this plugin needs beyond crackseg (without it, it is listed as not available)\n'
                    'CRACKSEG_REQUIRES = ("torch",)\n'
                    'CRACKSEG_INSTALL_HINT = "pip install \'crackseg[baselines]\'"\n')
    write_text(root / module / "__init__.py", head + imports + requires + "\n" + _MODULE[kind].format(**fmt))
    write_text(root / "tests" / f"test_{fmt['func']}.py", _TESTS[kind].lstrip().format(**fmt))
    deps = '"crackseg[baselines]"' if kind in _NEEDS_TORCH or kind == "backbone" else '"crackseg"'
    write_text(root / "pyproject.toml", f'''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "A crackseg {kind} plugin"
requires-python = ">=3.10"
dependencies = [{deps}]

[project.optional-dependencies]
test = ["pytest>=8"]

# crackseg finds the plugin through this entry point: nothing in crackseg changes
[project.entry-points.crackseg]
{name} = "{module}"

[tool.setuptools]
packages = ["{module}"]
''')
    write_text(root / "README.md", f'''# {dist}

A crackseg {kind} plugin, written by `crackseg new-plugin {name} --kind {kind}`.

```bash
pip install -e ".[test]"     # registers the entry point: `crackseg plugins` lists it
pytest                       # crackseg's plugin contracts, passing as generated
crackseg plugins --check     # registration and contract checks of every plugin (for your CI)
{_USE[kind].format(**fmt)}
```

Edit `{module}/__init__.py`; CONTRIBUTING.md of crackseg documents every hook, extra and
contract. Keep heavy imports (torch, ...) inside the factory so `crackseg --help` stays fast.
''')
    return root
