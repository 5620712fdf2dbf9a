"""``crackseg tune``: search spaces from params dataclasses, the study, the YAML layer, resuming, bad input."""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import yaml

import crackseg
from conftest import run_main
from crackseg.apps.tune import score_labeler
from crackseg.base.errors import ConfigError
from crackseg.config.search_space import DeclarationError, TuneParam, build_space, declared_space, parse_spec
from crackseg.evaluation.metrics import MetricAccumulator
from crackseg.labels.contract import LabelContext, PseudoLabel
from crackseg.testing import registered_plugin, tiny_crack_samples

optuna = pytest.importorskip("optuna")

#: every `prepare` that trained the test labeler's artefact (a file it writes), across invocations
TRAINED: list[str] = []
#: label() calls left before the test labeler raises KeyboardInterrupt (None: never)
INTERRUPT_AFTER: list[int | None] = [None]
#: label() calls of the test labeler, across invocations
LABEL_CALLS: list[int] = [0]


# -- a third party's labeler, declared like any plugin's --------------------------------------
@dataclass
class DarkParams:
    """Dark pixels: binary = grey < reference - k * std; soft = how much darker, scaled by ``spread``."""

    k: float = field(default=0.5, metadata={"tune": (0.0, 3.0)})
    spread: float = field(default=1.0, metadata={"tune": (0.25, 4.0), "log": True})
    reference: Literal["mean", "median"] = field(default="mean", metadata={"tune": True})
    #: the size of the trained "bank": changes the artefact, so it is not searched by default
    bank: int = field(default=2, metadata={"tune": (1, 4)})
    smooth: Literal["none", "box"] = "none"
    note: str = "x"


class DarkLabeler:
    def __init__(self, **params):
        self.p = DarkParams(**params)
        if self.p.spread <= 0:
            raise ConfigError(f"labeler parameter 'spread' must be > 0, got {self.p.spread}")
        self.level = None

    def artefacts(self):
        return {"bank": {"size": self.p.bank}}

    def prepare(self, train, context: LabelContext) -> None:
        path = context.artefact_dir("bank") / "bank.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"level": 1.0, "images": len(train)}))
            TRAINED.append(str(path))
        self.level = json.loads(path.read_text())["level"]

    def label(self, samples, context):
        LABEL_CALLS[0] += 1
        if INTERRUPT_AFTER[0] is not None:
            INTERRUPT_AFTER[0] -= 1
            if INTERRUPT_AFTER[0] < 0:
                raise KeyboardInterrupt  # Ctrl-C in the middle of a trial
        out = []
        for s in samples:
            g = s.load_image().astype(np.float64).mean(axis=2)
            if self.p.smooth == "box":
                g = (g + np.roll(g, 1, 0) + np.roll(g, 1, 1)) / 3
            ref = g.mean() if self.p.reference == "mean" else np.median(g)
            std = g.std() + 1e-6
            soft = np.clip((ref - g) / (4 * self.p.spread * std) * self.level, 0, 1).astype(np.float32)
            out.append(PseudoLabel(soft=soft, binary=g < ref - self.p.k * std))
        return out

    def fingerprint(self):
        return json.dumps([dataclasses.asdict(self.p), self.level])


class Plain:
    def __init__(self, width=3):
        self.width = width

    def prepare(self, train, context):
        return None

    def label(self, samples, context):
        return [PseudoLabel(soft=np.zeros(s.load_image().shape[:2], np.float32),
                            binary=np.zeros(s.load_image().shape[:2], bool)) for s in samples]

    def fingerprint(self):
        return "plain"


@dataclass
class PlainParams:
    width: int = 3


class TunePlugin:
    @crackseg.hookimpl
    def register_labelers(self, register):
        register("tune-dark", DarkLabeler, params=DarkParams, description="dark pixels (tune test plugin)")
        register("tune-plain", Plain, params=PlainParams, description="declares no range (tune test plugin)")


@pytest.fixture
def plugin():
    TRAINED.clear()
    INTERRUPT_AFTER[0] = None
    with registered_plugin(TunePlugin(), "tune-test"):
        yield


DATA = ["--data", "synthetic", "--set", "data.n_train=6", "--set", "data.n_test=1", "--set", "data.size=48"]


def tune(tmp_path: Path, *args: str, trials: int = 4):
    return run_main("tune", "--labeler", "tune-dark", *DATA, "--annotated", "5", "--trials", str(trials),
                    "--out", str(tmp_path / "tuned.yaml"), "--device", "cpu", "--quiet", *args)


# -- search spaces --------------------------------------------------------------------------
def test_declared_space_of_a_third_party_dataclass():
    space = declared_space(DarkParams)
    assert list(space) == ["k", "spread", "reference", "bank"]  # field order; undeclared fields are not searched
    assert space["k"] == TuneParam("k", "float", 0.0, 3.0)
    assert space["spread"].log and space["spread"].kind == "float"
    assert space["reference"] == TuneParam("reference", "categorical", choices=("mean", "median"))
    assert space["bank"] == TuneParam("bank", "int", 1, 4) and isinstance(space["bank"].low, int)
    assert declared_space(None) == {}


def _one_field(tp, default, metadata):
    return dataclasses.make_dataclass("P", [("x", tp, field(default=default, metadata=metadata))])


@pytest.mark.parametrize("tp, default, metadata, words", [
    (str, "a", {"tune": (0, 1)}, "needs an int or float"),
    (float, 0.5, {"tune": (1.0, 0.0)}, "is empty"),
    (float, 0.5, {"tune": (0.0, 1.0), "log": True}, "must be positive"),
    (int, 1, {"tune": (0.5, 3)}, "whole numbers"),
    (float, 0.5, {"tune": True}, "needs a Literal or bool"),
    (int, 1, {"tune": ["a", "b"]}, "does not fit"),
    (float, 0.5, {"tune": (0.0, 1.0, 2.0)}, "two numbers"),
    (float, 0.5, {"tune": "wide"}, "must be a range"),
])
def test_bad_declarations_are_the_plugins_mistake(tp, default, metadata, words):
    with pytest.raises(DeclarationError, match=words):
        declared_space(_one_field(tp, default, metadata))


def test_param_options_override_add_and_check():
    space = build_space(DarkParams, {"k": "0.5:1.5", "smooth": "", "spread": "0.5:2:log"}, fixed={"bank"})
    assert space["k"] == TuneParam("k", "float", 0.5, 1.5)
    assert space["smooth"].choices == ("none", "box")  # a Literal field without a declaration
    assert space["spread"] == TuneParam("spread", "float", 0.5, 2.0, log=True)
    assert "bank" not in space  # fixed by --set: never searched
    assert parse_spec("bank", int, "1,3").choices == (1, 3)
    for options, words in [({"kk": "0:1"}, "did you mean 'k'"), ({"note": ""}, "declares no range"),
                           ({"note": "0:1"}, "not a number"), ({"k": "0.5"}, "--set labeler.k=0.5"),
                           ({"k": "a,b"}, "expected a number"), ({"bank": "3:1"}, "is empty"),
                           ({"bank": ""}, "also set by --config/--set")]:
        with pytest.raises(ConfigError, match=words):
            build_space(DarkParams, options, fixed={"bank"} if words.startswith("also") else set(), owner="labeler 'x'")


def test_builtin_labelers_declare_valid_ranges_around_their_defaults():
    """Every installed labeler's declared ranges are searchable and hold its defaults (cam-crf: the CRF's too)."""
    from crackseg.plugins import registry

    reg = registry("labelers")
    entries = [reg.get(n) for n in reg.names()] + list(reg.unavailable())
    for entry in entries:
        defaults = entry.param_defaults()
        for p in declared_space(entry.params).values():
            value = defaults[p.name]
            if value is None:
                continue
            inside = value in p.choices if p.kind == "categorical" else p.low <= value <= p.high
            assert inside, f"{entry.name}: default {p.name}={value!r} outside {p.describe()}"
    crf = declared_space(next(e for e in entries if e.name == "cam-crf").params)
    assert {"gaussian_sxy", "bilateral_srgb", "bilateral_compat", "threshold", "gate_threshold"} <= set(crf)
    assert "classifier" not in crf  # the trained model's settings are not searched


def test_score_reports_chunks_and_ends_with_the_f_of_all_images():
    samples = tiny_crack_samples(5, size=32)
    masks = {s.stem: s.mask() for s in samples}
    lab = DarkLabeler(k=1.0)
    lab.level = 1.0
    reports = []
    f = score_labeler(lab, samples, masks, LabelContext(), chunk=2, report=lambda v, n: reports.append((n, v)))
    assert [n for n, _ in reports] == [2, 4]  # not after the last chunk: that is the final score
    acc = MetricAccumulator()
    for s, pl in zip(samples, lab.label(samples, LabelContext())):
        acc.add(s.stem, pl.binary, masks[s.stem])
    assert f == pytest.approx(acc.result().ods) and 0 < f <= 1
    soft = score_labeler(lab, samples, masks, LabelContext(), objective="soft", chunk=5)
    assert soft != f and 0 < soft <= 1


# -- the command ----------------------------------------------------------------------------------
def _study(tmp_path: Path, name: str = "tune-tune-dark"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'tuned.yaml.study.db'}")


def test_tune_writes_a_layer_that_label_and_run_accept_and_that_reproduces_the_score(plugin, tmp_path):
    r = tune(tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "tuned.yaml"
    text = out.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("best pseudo-label F" in line for line in header) and any("command: crackseg tune" in line
                                                                         for line in header)
    study = _study(tmp_path)
    assert len(study.trials) == 4 and study.trials[0].user_attrs.get("defaults")  # the first trial: the defaults
    assert f"best pseudo-label F {study.best_value:.4f}" in text and f"F {study.best_value:.4f}" in r.stdout
    section = yaml.safe_load(text)["labeler"]
    assert section["name"] == "tune-dark" and set(section) == {"name", "k", "spread", "reference"}
    assert 0.0 <= section["k"] <= 3.0 and section["reference"] in ("mean", "median")
    assert "bank" not in section  # it changes the trained artefact: not searched by default
    assert len(TRAINED) == 1  # the artefact was trained once for every trial

    # the layer's values on the same annotated images give the tuned score
    labels = tmp_path / "labels"
    r = run_main("label", "--config", str(out), "--labeler", "tune-dark", *DATA, "--out", str(labels), "--quiet")
    assert r.returncode == 0, r.stderr
    from crackseg.data.loading import load_samples

    samples = load_samples({"name": "synthetic", "n_train": 6, "n_test": 1, "size": 48}, "train")[:5]
    acc = MetricAccumulator()
    from crackseg.base.io import read_gray

    for s in samples:
        acc.add(s.stem, read_gray(labels / f"{s.stem}.png"), s.mask())
    layer_f = study.user_attrs.get("simplified", {}).get("value", study.best_value)  # the simplified best
    assert acc.result().ods == pytest.approx(layer_f, abs=1e-12)
    assert f"this layer: F {layer_f:.4f}" in text
    # and `run` / `config show` validate it as a run config layer
    r = run_main("config", "show", "--config", str(out), "--data", "synthetic")
    assert r.returncode == 0, r.stderr
    shown = yaml.safe_load(r.stdout)["labeler"]
    assert shown["name"] == "tune-dark" and shown["k"] == section["k"] and shown["bank"] == 2


def test_rerunning_continues_the_study(plugin, tmp_path):
    assert tune(tmp_path, trials=3).returncode == 0
    first = [t.params for t in _study(tmp_path).trials]
    r = tune(tmp_path, trials=5)
    assert r.returncode == 0, r.stderr
    study = _study(tmp_path)
    assert len(study.trials) == 5 and "(2 run now" in r.stdout  # only the missing trials ran
    assert [t.params for t in study.trials[:3]] == first  # the earlier trials are kept, not rerun
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 5  # new candidates
    assert len(TRAINED) == 1  # the artefact is reused by the resumed invocation
    r = tune(tmp_path, trials=5)
    assert r.returncode == 0 and "(0 run now" in r.stdout and len(_study(tmp_path).trials) == 5
    assert "5 trials" in (tmp_path / "tuned.yaml").read_text()


def test_an_interrupted_tune_resumes_without_rerunning_finished_trials(plugin, tmp_path):
    INTERRUPT_AFTER[0] = 3 * 3 + 1  # 5 images in chunks of 2: 3 label() calls a trial; stop inside the 4th
    r = tune(tmp_path, "--no-prune", "--prune-every", "2", trials=6)
    assert r.returncode == 130 and "rerun the same command to continue" in r.stderr
    assert not (tmp_path / "tuned.yaml").exists()  # nothing half-written
    states = [t.state.name for t in _study(tmp_path).trials]
    assert states == ["COMPLETE"] * 3 + ["FAIL"]
    done = [t.params for t in _study(tmp_path).trials[:3]]
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    INTERRUPT_AFTER[0] = None
    r = tune(tmp_path, "--no-prune", "--prune-every", "2", trials=6)
    assert r.returncode == 0, r.stderr
    study = _study(tmp_path)
    assert "(3 run now" in r.stdout and [t.params for t in study.trials[:3]] == done
    assert [t.state.name for t in study.trials].count("COMPLETE") == 6


def _layer(folder: Path) -> dict:
    return yaml.safe_load((folder / "tuned.yaml").read_text())["labeler"]


def test_an_interrupted_tune_ends_on_the_layer_of_an_uninterrupted_one(plugin, tmp_path):
    """The interrupted trial is rerun with its values, and each trial's draw depends only on its place among
    the finished ones, so continuing a study gives what one uninterrupted invocation gives."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    assert tune(whole, "--no-prune", "--tolerance", "-1", trials=6).returncode == 0
    INTERRUPT_AFTER[0] = 3 * 3 + 1  # inside the 4th trial
    assert tune(cut, "--no-prune", "--tolerance", "-1", trials=6).returncode == 130
    INTERRUPT_AFTER[0] = None
    r = tune(cut, "--no-prune", "--tolerance", "-1", trials=6)
    assert r.returncode == 0, r.stderr
    assert _layer(cut) == _layer(whole)

    def scored(folder):
        trials = [t for t in _study(folder).trials if t.state.name == "COMPLETE"]
        return [(t.params, t.value) for t in trials]

    assert scored(cut) == scored(whole)
    # the interrupted trial is neither a failure nor a trial of its own in the header
    assert "6 trials (6 complete, 0 pruned)" in (cut / "tuned.yaml").read_text()


def test_a_trial_a_killed_process_left_running_is_rerun_not_left_running(plugin, tmp_path):
    assert tune(tmp_path, "--no-prune", trials=3).returncode == 0
    study = _study(tmp_path)
    dead = study.ask(study.trials[1].distributions)  # what kill -9 inside a trial leaves: RUNNING for ever
    r = tune(tmp_path, "--no-prune", trials=5)
    assert r.returncode == 0, r.stderr
    trials = _study(tmp_path).trials
    assert "RUNNING" not in [t.state.name for t in trials]
    assert trials[dead.number].state.name == "FAIL"
    reruns = [t for t in trials if t.user_attrs.get("rerun_of") == dead.number]
    assert len(reruns) == 1 and reruns[0].params == dead.params and reruns[0].state.name == "COMPLETE"
    assert "5 trials (5 complete" in (tmp_path / "tuned.yaml").read_text()


def test_a_study_file_of_another_program_is_left_untouched(plugin, tmp_path):
    import sqlite3

    other = tmp_path / "inspections.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE bridges (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    r = tune(tmp_path, "--study", str(other))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "another program" in r.stderr and "bridges" in r.stderr
    assert other.read_bytes() == before
    text = tmp_path / "notes.db"
    text.write_text("not a database")
    r = tune(tmp_path, "--study", str(text))
    assert r.returncode == 2 and "not an SQLite database" in r.stderr
    assert text.read_text() == "not a database"


def test_an_artefact_parameter_named_with_param_is_searched_and_each_artefact_trained_once(plugin, tmp_path):
    r = tune(tmp_path, "--param", "bank=1,2", "--no-prune", trials=6)
    assert r.returncode == 0, r.stderr
    banks = {t.params["bank"] for t in _study(tmp_path).trials}
    assert len(TRAINED) == len(banks | {2}) and len(set(TRAINED)) == len(TRAINED)


def test_a_pruned_trial_counts_as_finished(plugin, tmp_path):
    r = tune(tmp_path, "--prune-every", "1", "--param", "k=2.5:3", trials=10)
    assert r.returncode == 0, r.stderr
    states = [t.state.name for t in _study(tmp_path).trials]
    assert len(states) == 10 and set(states) <= {"COMPLETE", "PRUNED"}


def _layer(tmp_path: Path) -> tuple[dict, list[str]]:
    text = (tmp_path / "tuned.yaml").read_text()
    return yaml.safe_load(text)["labeler"], [line for line in text.splitlines() if line.startswith("# this layer")]


def test_changes_that_gain_nothing_go_back_to_the_defaults(plugin, tmp_path):
    # binary objective: `spread` only scales the soft map, so whatever the best trial drew for it gains
    # nothing and goes back to its default; k starts outside its default (0.5), so the search changes it
    r = tune(tmp_path, "--param", "k=1:3", "--no-prune", trials=6)
    assert r.returncode == 0, r.stderr
    study = _study(tmp_path)
    best = study.best_params
    assert best["spread"] != 1.0  # a drawn value (the defaults trial is not in this space)
    section, summary = _layer(tmp_path)
    assert section["spread"] == 1.0 and section["k"] == best["k"]  # k is outside the checked defaults
    simplified = study.user_attrs["simplified"]
    assert "spread" in simplified["reverted"] and simplified["value"] >= study.best_value - 0.01
    assert "left at the default" in summary[0] and "spread" in summary[0].split("left at the default")[1]
    assert "this layer: F" in r.stdout

    # a rerun that adds no trial reuses the check instead of labelling again
    calls = LABEL_CALLS[0]
    r = tune(tmp_path, "--param", "k=1:3", "--no-prune", trials=6)
    assert r.returncode == 0, r.stderr
    assert LABEL_CALLS[0] == calls and _layer(tmp_path)[0] == section


def test_a_study_where_every_trial_scores_zero_says_so(plugin, tmp_path):
    """No label overlaps a mask in any trial: a warning on stderr and in the layer's header, the defaults kept."""
    r = tune(tmp_path, "--set", "labeler.k=50", trials=3)  # grey < mean - 50 std: never
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if line.startswith("crackseg: warning: every trial scored F 0")]
    assert len(warning) == 1 and "crackseg label --labeler tune-dark" in warning[0]
    text = (tmp_path / "tuned.yaml").read_text()
    assert "# every trial scored F 0 on the 5 annotated images" in text
    assert yaml.safe_load(text)["labeler"]["spread"] == 1.0  # the default
    (tmp_path / "found").mkdir()
    r = tune(tmp_path / "found", trials=3)  # a study that finds something says nothing of the kind
    assert r.returncode == 0 and "every trial scored F 0" not in r.stderr
    assert "every trial scored F 0" not in (tmp_path / "found" / "tuned.yaml").read_text()


def test_tolerance_minus_one_writes_the_best_trial_as_it_is(plugin, tmp_path):
    r = tune(tmp_path, "--param", "k=1:3", "--no-prune", "--tolerance", "-1", trials=4)
    assert r.returncode == 0, r.stderr
    section, summary = _layer(tmp_path)
    best = _study(tmp_path).best_params
    assert {k: section[k] for k in best} == best and "left at the default" not in summary[0]
    assert "--tolerance -1" in (tmp_path / "tuned.yaml").read_text()  # the command in the header


def _no_masks_folder(tmp_path: Path) -> Path:
    from crackseg.base.io import write_png

    root = tmp_path / "photos"
    for i in range(2):
        write_png(root / "images" / f"p{i}.png", np.full((24, 24, 3), 120, np.uint8))
    return root


@pytest.mark.parametrize("case", ["annotated-0", "no-masks", "unknown-param", "nothing-tunable", "bad-range",
                                  "other-settings", "trials-0", "unknown-key", "no-optuna", "bad-value-in-a-trial"])
def test_bad_input_is_one_line_and_exit_2(plugin, tmp_path, monkeypatch, case):
    out = str(tmp_path / "t.yaml")
    base = ["tune", "--labeler", "tune-dark", *DATA, "--out", out, "--trials", "2", "--quiet"]
    args, words = {
        "annotated-0": (base + ["--annotated", "0"], "at least one annotated image"),
        "no-masks": (["tune", "--labeler", "tune-dark", "--data", str(_no_masks_folder(tmp_path)), "--set",
                      "data.require_masks=false", "--split", "all", "--out", out, "--quiet"], "no annotated image"),
        "unknown-param": (base + ["--param", "sprad=0:1"], "has no parameter 'sprad'; did you mean 'spread'?"),
        "nothing-tunable": (["tune", "--labeler", "tune-plain", *DATA, "--out", out], "nothing to tune"),
        "bad-range": (base + ["--param", "k=1:0"], "is empty"),
        "other-settings": (base + ["--annotated", "2"], "was run with other settings (annotated differ)"),
        "trials-0": (base[:-3] + ["--trials", "0"], "--trials 0"),
        "unknown-key": (base + ["--set", "train.epochs=1"], "not used by `crackseg tune`"),
        "no-optuna": (base, "pip install 'crackseg[tune]'"),
        "bad-value-in-a-trial": (base + ["--param", "spread=-2:-1"], "'spread' must be > 0"),
    }[case]
    if case == "other-settings":
        assert run_main(*base).returncode == 0
    if case == "no-optuna":
        monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna → ImportError
    r = run_main(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crackseg: error:") and words in lines[0], r.stderr
    if case != "other-settings":
        assert not Path(out).exists()  # nothing half-written
