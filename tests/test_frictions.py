"""Small frictions of everyday use: a reused run keeps its training time, measure draws on the photos, long
notes are footnotes, the --help example runs offline, `list` says "did you mean", skips say how to un-skip."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import crackseg
from conftest import REPO, install_hint, missing_data_reason, run_main
from crackseg.base.tables import NOTE_CELL_CHARS, results_table

TINY = ["--data", "synthetic", "--device", "cpu", "--quiet", "--set", "data.n_train=4", "--set", "data.n_test=3",
        "--set", "data.size=64", "--set", "train.batch_size=2", "--set", "backbone.encoder=resnet18",
        "--set", "train.epochs=1", "--set", "train.num_workers=0"]


# -- a finished run that is reused keeps its training time ----------------------------------------
def test_a_reused_finished_run_keeps_its_training_time(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    assert run_main("run", *TINY, "--set", "predict.overlays=0", "--out", str(out)).returncode == 0
    first = json.loads((out / "metrics.json").read_text())
    assert first["train_seconds"] > 0 and first["train_images_per_s"] > 0
    r = run_main("run", *TINY, "--set", "predict.overlays=0", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "metrics.json").read_text())
    assert again["train_seconds"] == first["train_seconds"]
    assert again["train_images_per_s"] == first["train_images_per_s"]


def test_a_checkpoint_without_its_training_time_keeps_the_last_metrics_json(tmp_path):
    """A run finished by an earlier release (its checkpoint has no training time) keeps metrics.json's."""
    torch = pytest.importorskip("torch")
    out = tmp_path / "run"
    assert run_main("run", *TINY, "--set", "predict.overlays=0", "--out", str(out)).returncode == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    ckpt.pop("train_seconds")
    ckpt.pop("images_seen")
    torch.save(ckpt, out / "checkpoint.pt")
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "train_seconds": 12.5, "train_images_per_s": 3.0}))
    assert run_main("run", *TINY, "--set", "predict.overlays=0", "--out", str(out), "--resume").returncode == 0
    again = json.loads((out / "metrics.json").read_text())
    assert (again["train_seconds"], again["train_images_per_s"]) == (12.5, 3.0)


def test_the_training_time_of_a_resumed_training_counts_every_session(tmp_path):
    """Interrupted after one epoch, resumed for the second: the result's time is both sessions', and a finished
    checkpoint that is reused reports exactly what it recorded."""
    torch = pytest.importorskip("torch")
    import time

    from crackseg.training.engine import Engine, EngineSettings

    def session(resume: bool, pause: float):
        model = torch.nn.Linear(2, 1)
        engine = Engine(model, EngineSettings(device="cpu", checkpoint_path=tmp_path / "checkpoint.pt", epochs=2,
                                              resume=resume, quiet=True))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        if engine.restore(opt):
            return engine.result()
        for epoch in engine.epochs(limit=1):
            time.sleep(pause)
            engine.backward_step(model(torch.ones(4, 2)).pow(2).mean(), opt, images=4)
            engine.end_epoch(epoch, {"loss": 0.0}, opt)
        return engine.result()

    first = session(False, 0.3)
    recorded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["train_seconds"]
    assert first.epochs_done == 1 and 0.3 <= recorded <= first.seconds
    second = session(True, 0.2)
    assert second.epochs_done == 2 and second.seconds >= recorded + 0.2
    assert second.images_per_s == pytest.approx(8 / second.seconds)
    reused = session(True, 0.0)
    assert reused.stopped_early == "already finished"
    recorded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["train_seconds"]
    assert reused.seconds == recorded == second.seconds


# -- crackseg measure RUN_DIR draws every overlay on the run's test photo ------------------------------
def test_measure_a_run_draws_every_overlay_on_its_photo(tmp_path):
    pytest.importorskip("skan")
    from crackseg.apps.measure import binary_mask, draw_measurements, measure_mask

    run = tmp_path / "run"
    # one of the three test images gets the run's own (red/blue) overlay: measure must not draw on it
    assert run_main("run", *TINY, "--set", "predict.overlays=1", "--out", str(run)).returncode == 0
    assert len(list((run / "overlays").glob("*.png"))) == 1
    r = run_main("measure", str(run), "--out", str(tmp_path / "m"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    threshold = json.loads((tmp_path / "m" / "measurements.json").read_text())["threshold"]
    photos = {s.stem: s.load_image()
              for s in crackseg.create_dataset("synthetic", n_train=4, n_test=3, size=64).samples("test")}
    drawn = {p.stem: crackseg.read_image(p) for p in (tmp_path / "m" / "overlays").glob("*.png")}
    assert sorted(drawn) == sorted(photos)
    for stem, photo in photos.items():
        instances = measure_mask(binary_mask(run / "predictions" / f"{stem}.png", threshold), stem)[0]
        assert np.array_equal(drawn[stem], draw_measurements(photo, instances)), stem


def test_measure_a_run_whose_data_is_gone_says_so_and_draws_on_the_masks(tmp_path):
    pytest.importorskip("skan")
    data = crackseg.write_tiny_dataset(tmp_path / "data", n=6, size=64)
    run = tmp_path / "run"
    args = ["--device", "cpu", "--quiet", "--set", "train.batch_size=2", "--set", "backbone.encoder=resnet18",
            "--set", "train.epochs=1", "--set", "train.num_workers=0", "--set", "data.test_fraction=0.5"]
    r = run_main("run", "--data", str(data), *args, "--out", str(run))
    assert r.returncode == 0, r.stderr
    shutil.rmtree(data)
    r = run_main("measure", str(run), "--out", str(tmp_path / "m"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("crackseg: warning: ") and "overlays are drawn on the masks" in r.stderr
    assert r.stderr.count("\n") == 1 and list((tmp_path / "m" / "overlays").glob("*.png"))


# -- long notes are footnotes under results.md's table ------------------------------------------
DNS_WARNING = ("crackseg: warning: patch classifier resnet18: no ImageNet weights (no network (huggingface.co does "
               "not resolve: [Errno -3] Temporary failure in name resolution) and no timm-resnet18.pth in the cache "
               "/home/someone/.cache/crackseg/weights); it was trained from random weights, which is much worse")


def test_a_long_note_is_a_footnote_and_the_cell_keeps_a_marker():
    md = results_table([{"labeler": "gradcam", "backbone": "unet", "data": "synthetic", "ods": 0.5, "ois": 0.4,
                         "ap": 0.3, "notes": ["synthetic data", DNS_WARNING, "20 ep @ 128px"]}])
    table, _, notes = md.partition("\n\n")
    row = table.splitlines()[-1]
    assert row.endswith("| synthetic data; ¹; 20 ep @ 128px |") and "cache" not in table
    assert notes == f"- ¹ {DNS_WARNING}"
    # a metrics.json's notes string is split at "; " the same way; short notes stay in the cell
    two = results_table([{"notes": f"{DNS_WARNING.replace('; ', ', ')}; 8 ep @ 96px"},
                         {"notes": "8 ep @ 96px"}, {"notes": "x" * (NOTE_CELL_CHARS + 1)}])
    assert "| ¹; 8 ep @ 96px |" in two and "| 8 ep @ 96px |" in two and "| ² |" in two
    assert two.endswith("\n- ² " + "x" * (NOTE_CELL_CHARS + 1)) and "\n\n- ¹ crackseg: warning:" in two
    assert "\n\n" not in results_table([{"notes": "8 ep @ 96px"}])  # no footnote, no blank line


# -- crackseg --help: its example commands run offline on the built-in data ------------------------
def test_the_help_example_runs_offline(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    r = run_main("--help")
    assert r.returncode == 0
    runs = [line.split("#")[0].split()[1:] for line in r.stdout.splitlines() if line.strip().startswith("crackseg run")]
    assert runs == [["run"], ["run", "--labeler", "ridge", "--backbone", "unet", "--data", "synthetic"]]
    assert all("PATH" not in a and "crackclip" not in a for a in runs)
    small = ["--device", "cpu", "--quiet", "--set", "data.n_train=4", "--set", "data.n_test=2", "--set", "data.size=64",
             "--set", "train.epochs=1", "--set", "train.num_workers=0", "--set", "predict.overlays=0"]
    for i, argv in enumerate(runs):
        r = run_main(*argv, *small, "--out", str(tmp_path / f"run{i}"))
        assert r.returncode == 0, (argv, r.stderr)
        # nothing wanted weights or a download it could not have (one epoch may well predict badly: not checked)
        assert not any(w in r.stderr.lower() for w in ("weights", "network", "download")), (argv, r.stderr)


# -- crackseg list: "did you mean" for a misspelt kind or name ------------------------------------
@pytest.mark.parametrize("args,hint", [(["backbone"], "unknown kind 'backbone'; did you mean 'backbones'?"),
                                       (["Losses"], "did you mean 'losses'?"),
                                       (["backbones", "unett"], "no backbones match 'unett'; did you mean 'unet'?"),
                                       (["losses", "Dicee"], "did you mean 'dice'?")])
def test_list_says_did_you_mean(args, hint):
    r = run_main("list", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("crackseg: error: ") and hint in r.stderr and r.stderr.count("\n") == 1
    assert "(available: " in r.stderr


def test_list_with_a_wildcard_that_matches_nothing_guesses_nothing():
    r = run_main("list", "backbones", "zz*")
    assert r.returncode == 2 and "no backbones match 'zz*' (available: " in r.stderr and "did you mean" not in r.stderr
    assert run_main("list", "backbones", "une*").returncode == 0


# -- skip reasons say what is missing and how to get it --------------------------------------------
def test_skip_reasons_say_how_to_get_what_is_missing():
    assert install_hint("could not import 'skan': No module named 'skan'").endswith(
        "(install it: pip install 'crackseg[measure]'; ./dev test installs everything)")
    assert "pip install 'crackseg[onnx]'" in install_hint("could not import 'onnxruntime': DLL load failed")
    assert install_hint("needs /dev/full") == "needs /dev/full"  # other reasons are left alone
    cfd = missing_data_reason("cfd")
    assert cfd.startswith("needs ../shared/datasets/cfd (CFD, 118 pavement photos") and "README" in cfd
    assert "development checkout" in cfd and "images/, masks/, splits/" in cfd
    assert all(name in missing_data_reason() for name in ("CFD", "DeepCrack", "Crack500"))


def test_a_missing_module_skip_reason_names_the_extra(tmp_path):
    """What `pytest -rs` prints for a test whose module is missing, through this folder's conftest."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(textwrap.dedent("""
        import sys
        import pytest

        sys.modules["skan"] = None  # as if it were not installed
        pytest.importorskip("skan")

        def test_never():
            pass
    """))
    r = subprocess.run([sys.executable, "-m", "pytest", "-rs", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        str(tmp_path / "test_x.py")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "1 skipped" in r.stdout, r.stdout + r.stderr
    assert "could not import 'skan'" in r.stdout and "pip install 'crackseg[measure]'" in r.stdout, r.stdout
