"""``crackseg annotate`` over HTTP: the token, the path checks, saving at every change, the concurrent-page rule,
tracing, undo, reopening, the command's one-line errors, and labels that ``label`` and ``tune`` read.

A server runs in a thread of the test process on port 0 (a second one, where two processes are the point, in a
subprocess); requests are plain urllib / http.client.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crackseg
from conftest import REPO, run_main
from crackseg.base.io import read_mask, write_png
from crackseg.data.weak_labels import read_weak_labels_csv

pytest.importorskip("skimage.graph", reason="crackseg annotate needs scikit-image (pip install 'crackseg[annotate]')")

from crackseg.apps.annotate.command import open_server  # noqa: E402
from crackseg.apps.annotate.server import AnnotateServer  # noqa: E402

W, H, P = 160, 128, 32


def crack_y(x: np.ndarray | float, i: int) -> np.ndarray:
    """Where the crack of photo ``i`` runs: a dark curve ``y(x)``."""
    return 64 + 20 * np.sin(np.asarray(x, float) / 25 + i)


def write_photos(folder: Path, n: int = 3) -> Path:
    """``n`` grey photos ``p0.png ...`` (W x H) with a 3-pixel dark curved crack (:func:`crack_y`), and a text file."""
    rng = np.random.default_rng(0)
    for i in range(n):
        grey = (150 + rng.normal(0, 6, (H, W))).clip(0, 255).astype(np.uint8)
        for x in range(W):
            y = int(round(float(crack_y(x, i))))
            grey[y - 1 : y + 2, x] = 60
        write_png(folder / f"p{i}.png", np.dstack([grey] * 3))
    (folder / "notes.txt").write_text("not a photo")
    return folder


def crack_points(i: int, step: int = 20) -> list[list[int]]:
    return [[x, int(round(float(crack_y(x, i))))] for x in range(2, W - 2, step)] + [[W - 3, int(round(float(
        crack_y(W - 3, i))))]]


class Client:
    """Requests to one server; ``token=None`` sends none."""

    def __init__(self, base: str, token: str, server: AnnotateServer | None = None) -> None:
        self.base, self.token, self.server = base, token, server

    def call(self, method: str, path: str, body: Any = None, token: str | None = "", raw: bytes | None = None,
             in_query: bool = False) -> tuple[int, Any]:
        token = self.token if token == "" else token
        headers = {}
        if token is not None and not in_query:
            headers["X-Crackseg-Token"] = token
        if token is not None and in_query:
            path += ("&" if "?" in path else "?") + f"token={token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status, payload = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, Any]:
        return self.call("POST", path, body, **kw)

    def raw_get(self, path: str) -> int:
        """GET ``path`` exactly as written (no normalisation of ``..``), with the token."""
        conn = http.client.HTTPConnection(self.base.split("//")[1], timeout=30)
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("X-Crackseg-Token", self.token)
        conn.endheaders()
        status = conn.getresponse().status
        conn.close()
        return status

    def rev(self, stem: str) -> int:
        return int(self.get(f"/api/photos/{stem}")[1]["rev"])

    def labels(self, stem: str, image: str | None = None, patches: list[list[int]] | None = None,
               rev: int | None = None) -> tuple[int, Any]:
        return self.post(f"/api/photos/{stem}/labels",
                         {"rev": self.rev(stem) if rev is None else rev, "image": image, "patches": patches or []})


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    write_png(tmp_path / "secret.png", np.zeros((4, 4), np.uint8))  # beside PHOTOS_DIR: never served
    return write_photos(tmp_path / "photos")


@pytest.fixture
def serve(photos: Path, tmp_path: Path):
    """Start a server (in a thread) on ``photos`` with labels in tmp_path/labels; stopped after the test."""
    started: list[AnnotateServer] = []

    def start(**kw: Any) -> Client:
        kw = {"patch_size": P, "port": 0, **kw}
        server = open_server(kw.pop("photos", photos), kw.pop("out", tmp_path / "labels"), **kw)
        server.start()
        started.append(server)
        return Client(f"http://127.0.0.1:{server.port}", server.token, server)

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# -- safe by default ---------------------------------------------------------------------------------------------
def test_requests_without_the_token_are_refused(serve, tmp_path):
    c = serve()
    assert c.server is not None and c.server.server_address[0] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{48}", c.token)
    paths = ["/", "/static/annotate.js", "/api/photos", "/api/photos/p0", "/api/photos/p0/image",
             "/api/photos/p0/suggestions"]
    for token in (None, "0" * 48, c.token[:-1]):
        for path in paths:
            assert c.get(path, token=token)[0] == 403, (path, token)
        status, body = c.post("/api/photos/p0/labels", {"rev": 0, "image": "crack", "patches": [[0, 0]]}, token=token)
        assert status == 403 and "token" in body["error"]
    assert not (tmp_path / "labels" / "annotations" / "p0.json").exists()  # a refused change writes nothing
    assert read_lines(tmp_path / "labels" / "weak_labels.csv") == ["stem,x,y,size,label"]
    for path in paths:  # the token in the URL (the page, its files, its images) or in the header (its requests)
        assert c.get(path, in_query=True)[0] == 200, path
        assert c.get(path)[0] == 200, path
    status, page = c.get("/", in_query=True)
    assert f"/static/annotate.js?token={c.token}".encode() in page and b"__TOKEN__" not in page


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_only_the_listed_photos_and_page_files_are_served(serve, photos, tmp_path):
    c = serve()
    status, data = c.get("/api/photos/p1/image")
    assert status == 200 and data == (photos / "p1.png").read_bytes()
    (tmp_path / "labels" / "masks" / "x.png").write_bytes(b"")  # files that exist, outside the listing
    for path in ["/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2Fserver.py", "/static/index.html",
                 "/api/photos/..%2Fsecret/image", "/api/photos/%2E%2E%2Fsecret/image", "/api/photos/secret/image",
                 "/api/photos/notes/image", "/api/photos/notes.txt/image", "/api/photos/..%2Flabels%2Fmasks%2Fx/image",
                 f"/api/photos/{str(tmp_path / 'secret').replace('/', '%2F')}/image", "/api/photos/p1/../../secret.png",
                 "/api/photos/p1/image/../../../secret.png", "/../secret.png", "/etc/passwd"]:
        assert c.raw_get(path) == 404, path
    assert c.get("/api/photos/nope")[0] == 404


def test_each_change_is_saved_at_once_in_the_weak_label_csv(serve, tmp_path):
    c = serve()
    labels = tmp_path / "labels"
    status, body = c.labels("p0", patches=[[0, 64], [32, 64]])  # marked patches label the photo crack
    assert status == 200 and body["state"]["image"] == "crack" and body["state"]["rev"] == 1
    assert body["progress"] == {"done": 1, "total": 3}
    weak = read_weak_labels_csv(labels / "weak_labels.csv")
    assert weak["p0"].image is True
    assert {(p.x, p.y) for p in weak["p0"].patches if p.crack} == {(0, 64), (32, 64)}
    assert len(weak["p0"].patches) == 5 * 4  # every patch of the grid: the rest are no crack
    gate = weak["p0"].gate(H, W)
    assert gate[64:96, 0:64].all() and not gate[:64].any() and not gate[:, 64:].any()
    assert c.labels("p1", image="no_crack")[0] == 200
    assert c.labels("p2", image="skip")[0] == 200
    weak = read_weak_labels_csv(labels / "weak_labels.csv")
    assert weak["p1"].image is False and not weak["p1"].gate(H, W).any() and "p2" not in weak  # skipped: no rows
    assert c.get("/api/photos")[1]["progress"] == {"done": 3, "total": 3}
    state = json.loads((labels / "annotations" / "p0.json").read_text())
    assert state["rev"] == 1 and state["patches"] == [[0, 64], [32, 64]] and state["patch_size"] == P
    c.labels("p0", image=None)  # undecided again: its rows go
    assert set(read_weak_labels_csv(labels / "weak_labels.csv")) == {"p1"}
    assert not temporaries(labels)


def test_rows_the_page_does_not_manage_are_kept(serve, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "weak_labels.csv").write_text("stem,x,y,size,label\n# from the site survey\nold,1\np0,0\np1,0,0,32,1\n")
    c = serve()
    assert read_lines(labels / "weak_labels.csv")[:4] == ["stem,x,y,size,label", "# from the site survey", "old,1",
                                                          "p0,0"]
    c.labels("p1", image="crack")  # p1's own row goes, p1's new rows come in its place
    assert read_lines(labels / "weak_labels.csv") == ["stem,x,y,size,label", "# from the site survey", "old,1", "p0,0",
                                                      "p1,1"]


def test_bad_edits_are_refused_with_one_line_and_change_nothing(serve, tmp_path):
    c = serve()
    c.labels("p0", patches=[[0, 0]])
    before = (tmp_path / "labels" / "weak_labels.csv").read_bytes()
    bad = [({"rev": 1, "patches": [[5, 0]]}, "not a corner"), ({"rev": 1, "patches": [[160, 0]]}, "not a corner"),
           ({"rev": 1, "image": "no_crack", "patches": [[0, 0]]}, "labelled no_crack"),
           ({"rev": 1, "image": "maybe"}, "image label 'maybe'"), ({"image": "crack"}, "rev None"),
           ({"rev": True, "image": "crack"}, "rev True"), ({"rev": 1, "patches": [[0, True]]}, "two integers")]
    for body, words in bad:
        status, reply = c.post("/api/photos/p0/labels", body)
        assert status == 400 and words in reply["error"], (body, reply)
    for body, words in [({"rev": 1, "op": "paint", "points": [[1, 1]]}, "op 'paint'"),
                        ({"rev": 1, "op": "trace", "points": [[1, 1]]}, "at least two"),
                        ({"rev": 1, "op": "trace", "points": [[1, 1], [500, 1]]}, "inside the photo"),
                        ({"rev": 1, "op": "erase", "points": [[1, 1]], "width": 0}, "width 0")]:
        status, reply = c.post("/api/photos/p0/mask", body)
        assert status == 400 and words in reply["error"], (body, reply)
    assert c.post("/api/photos/p0/labels", None, raw=b"{not json")[0] == 400
    assert c.post("/api/photos/p0/labels", None, raw=b"[1, 2]")[0] == 400
    assert c.rev("p0") == 1 and (tmp_path / "labels" / "weak_labels.csv").read_bytes() == before


# -- nothing lost, nothing clobbered ---------------------------------------------------------------------------
def test_a_stale_page_is_told_to_reload_instead_of_overwriting(serve, tmp_path):
    c = serve()
    seen_by_both = c.rev("p0")
    assert c.labels("p0", patches=[[0, 64]], rev=seen_by_both)[0] == 200  # page A
    status, body = c.labels("p0", image="no_crack", rev=seen_by_both)  # page B, still showing revision 0
    assert status == 409 and "reload" in body["error"]
    assert body["state"]["patches"] == [[0, 64]] and body["state"]["rev"] == 1  # what to show instead
    assert read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")["p0"].image is True  # A's work is kept
    assert c.labels("p0", image="no_crack", rev=body["state"]["rev"])[0] == 200  # after reloading, B may change it
    assert read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")["p0"].image is False


def start_process(photos: Path, out: Path, *extra: str) -> tuple[subprocess.Popen[str], str, str]:
    """``crackseg annotate`` in a process of its own; (process, base URL, token) from what it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "crackseg", "annotate", str(photos), "--out", str(out),
                             "--patch-size", str(P), "--port", "0", "--no-browser", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    for _ in range(5):
        line = proc.stdout.readline()
        m = re.search(r"open (http://127\.0\.0\.1:\d+)/\?token=([0-9a-f]+)", line)
        if m:
            return proc, m.group(1), m.group(2)
    proc.kill()
    raise AssertionError(f"no URL printed: {proc.communicate()}")


def test_two_servers_on_one_folder_lose_no_work_and_a_killed_one_loses_nothing(serve, photos, tmp_path):
    a = serve()
    proc, base, token = start_process(photos, tmp_path / "labels")
    try:
        b = Client(base, token)
        accepted = {"p0": 0, "p1": 0, "p2": 0}
        errors: list[str] = []

        def work(client: Client, stems: list[str], rounds: int) -> None:
            for k in range(rounds):
                for stem in stems:
                    status, body = client.labels(stem, patches=[[(k % 5) * P, 0]])
                    if status == 200:
                        accepted[stem] += 1
                    elif status != 409:
                        errors.append(f"{status} {body}")

        # both servers change every photo at once: each change is refused (409) or saved, never lost
        threads = [threading.Thread(target=work, args=(a, ["p0", "p1", "p2"], 6)),
                   threading.Thread(target=work, args=(b, ["p2", "p1", "p0"], 6))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        weak = read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")
        for stem, n in accepted.items():
            state = json.loads((tmp_path / "labels" / "annotations" / f"{stem}.json").read_text())
            assert n >= 6 and state["rev"] == n  # every saved change counted once
            assert [[p.x, p.y] for p in weak[stem].patches if p.crack] == state["patches"]  # the CSV agrees
        assert b.labels("p1", image="no_crack")[0] == 200  # the last change, then the process is killed
    finally:
        proc.kill()  # SIGKILL: no chance to finish anything
        proc.communicate(timeout=30)
    assert read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")["p1"].image is False
    assert a.get("/api/photos/p1")[1]["image"] == "no_crack"
    assert not temporaries(tmp_path / "labels")


def test_a_change_cut_off_between_its_files_is_completed_on_reopening(serve, tmp_path, monkeypatch):
    from crackseg.apps.annotate import store

    c = serve()
    c.labels("p0", image="crack")

    def killed(*args: Any) -> None:
        raise OSError("killed")

    monkeypatch.setattr(store, "replace_rows", killed)  # the state file is written, then the server "dies"
    status, body = c.labels("p0", patches=[[0, 0]])
    assert status == 500
    assert [p for p in read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")["p0"].patches] == []
    monkeypatch.undo()
    c2 = serve()  # running the command again
    weak = read_weak_labels_csv(tmp_path / "labels" / "weak_labels.csv")["p0"]
    assert [(p.x, p.y) for p in weak.patches if p.crack] == [(0, 0)]
    assert c2.get("/api/photos/p0")[1]["patches"] == [[0, 0]]


def test_reopening_continues_where_the_user_stopped(serve, photos, tmp_path):
    c = serve()
    c.labels("p0", patches=[[32, 32]])
    c.labels("p1", image="no_crack")
    assert c.server is not None
    c.server.shutdown()
    c2 = serve(patch_size=64)  # a new session with another patch size
    status, listing = c2.get("/api/photos")
    assert listing["progress"] == {"done": 2, "total": 3} and [p["done"] for p in listing["photos"]] == [1, 1, 0]
    p0 = c2.get("/api/photos/p0")[1]
    assert p0["patch_size"] == P and p0["patches"] == [[32, 32]] and p0["rev"] == 1  # it keeps its grid
    assert c2.get("/api/photos/p2")[1]["patch_size"] == 64


# -- tracing -------------------------------------------------------------------------------------------------------
def test_tracing_follows_the_crack_and_the_mask_is_saved_beside_its_photo(serve, photos, tmp_path):
    c = serve()
    labels = tmp_path / "labels"
    start, end = crack_points(0)[0], crack_points(0)[-1]
    status, body = c.post("/api/photos/p0/mask", {"rev": 0, "op": "trace", "points": [start, end], "width": 1})
    assert status == 200 and body["state"]["has_mask"] and body["state"]["rev"] == 1
    path = np.array(body["path"])
    off = np.abs(path[:, 1] - crack_y(path[:, 0], 0))
    chord = np.interp(path[:, 0], [start[0], end[0]], [start[1], end[1]])
    assert off.max() <= 2.0 and np.abs(chord - crack_y(path[:, 0], 0)).max() > 15  # the crack, not the chord
    mask = read_mask(labels / "masks" / "p0.png", (H, W))
    xs = np.arange(start[0], end[0] + 1)
    assert mask[np.round(crack_y(xs, 0)).astype(int), xs].mean() > 0.9 and mask.sum() < 2 * len(xs)
    assert (labels / "images" / "p0.png").read_bytes() == (photos / "p0.png").read_bytes()
    data = crackseg.create_dataset("folder", root=str(labels))  # OUT is a data set of the traced photos
    assert [s.stem for s in data.samples("all")] == ["p0"] and data.samples("all")[0].mask().sum() == mask.sum()
    status, overlay = c.get("/api/photos/p0/mask")
    assert status == 200 and overlay[:8] == b"\x89PNG\r\n\x1a\n"
    # erasing everything removes the mask and its photo: the data set holds only annotated photos
    status, body = c.post("/api/photos/p0/mask", {"rev": 1, "op": "erase", "points": [[0, 0], [W - 1, H - 1]],
                                                  "width": 256})
    assert status == 200 and not body["state"]["has_mask"]
    assert not (labels / "masks" / "p0.png").exists() and not (labels / "images" / "p0.png").exists()
    assert c.get("/api/photos/p0/mask")[0] == 404
    status, body = c.post("/api/photos/p0/undo", {"rev": 2})  # undo brings both back
    assert status == 200 and body["undone"] and body["state"]["has_mask"]
    assert np.array_equal(read_mask(labels / "masks" / "p0.png", (H, W)), mask)
    assert (labels / "images" / "p0.png").is_file() and not temporaries(labels)


def test_photos_inside_the_labels_folder_are_not_copied(tmp_path, serve):
    photos = write_photos(tmp_path / "data" / "images", n=1)
    c = serve(photos=photos, out=tmp_path / "data")
    assert c.post("/api/photos/p0/mask", {"rev": 0, "op": "trace", "points": crack_points(0)[:2], "width": 3})[0] == 200
    assert (tmp_path / "data" / "masks" / "p0.png").is_file()
    assert c.post("/api/photos/p0/mask", {"rev": 1, "op": "erase", "points": [[0, 0]], "width": 256})[0] == 200
    assert not (tmp_path / "data" / "masks" / "p0.png").exists()
    status, body = c.post("/api/photos/p0/mask", {"rev": 2, "op": "erase", "points": [[W - 1, H - 1]], "width": 256})
    assert status == 200 and body["state"]["rev"] == 2  # nothing left to erase: nothing saved
    assert (photos / "p0.png").is_file() and sorted(p.name for p in photos.iterdir()) == ["notes.txt", "p0.png"]


def test_undo_goes_back_one_change_at_a_time_and_never_over_another_pages_work(serve):
    c = serve()
    c.labels("p0", patches=[[0, 0]])
    c.labels("p0", patches=[[0, 0], [32, 0]])
    c.post("/api/photos/p0/mask", {"rev": 2, "op": "trace", "points": crack_points(0)[:3], "width": 3})
    steps = []
    for _ in range(4):
        status, body = c.post("/api/photos/p0/undo", {"rev": c.rev("p0")})
        assert status == 200
        steps.append((body["undone"], body["state"]["patches"], body["state"]["has_mask"]))
    assert steps == [(True, [[0, 0], [32, 0]], False), (True, [[0, 0]], False), (True, [], False), (False, [], False)]
    c.labels("p1", patches=[[0, 0]])
    c.labels("p1", patches=[[0, 0], [32, 32]], rev=1)
    assert c.post("/api/photos/p1/undo", {"rev": 1})[0] == 409  # a stale page's undo


# -- suggestions -----------------------------------------------------------------------------------------------
class _DarkLabeler:
    """Training-free: crack where the photo is darker than 100."""

    def prepare(self, train, context):
        pass

    def label(self, samples, context):
        from crackseg.labels.contract import PseudoLabel

        out = []
        for s in samples:
            dark = s.load_image().mean(axis=2) < 100
            out.append(PseudoLabel(soft=dark.astype(np.float32), binary=dark))
        return out

    def fingerprint(self):
        return "dark"


class _TrainedLabeler(_DarkLabeler):
    def artefacts(self):
        return {"classifier": {"arch": "x"}}


@dataclasses.dataclass
class _NoParams:
    pass


class _Plugin:
    @staticmethod
    @crackseg.hookimpl
    def register_labelers(register):
        register("dark-test", _DarkLabeler, params=_NoParams, description="dark pixels")
        register("trained-test", _TrainedLabeler, params=_NoParams, description="needs training")


def test_suggestions_come_from_the_labeler_the_user_names(serve, photos):
    from crackseg.testing import registered_plugin

    assert serve().get("/api/photos/p0/suggestions")[1]["patches"] == []  # none asked for: none
    with registered_plugin(_Plugin, "annotate-test"):
        c = serve(suggest="dark-test")
        status, body = c.get("/api/photos/p0/suggestions")
        assert status == 200 and body["labeler"] == "dark-test"
        xs = np.arange(W)
        ys = np.round(crack_y(xs, 0)).astype(int)
        counts: dict[tuple[int, int], int] = {}
        for x, y in zip(xs, ys):
            for yy in (y - 1, y, y + 1):
                counts[(x // P * P, yy // P * P)] = counts.get((x // P * P, yy // P * P), 0) + 1
        assert sorted(map(tuple, body["patches"])) == sorted(k for k, n in counts.items() if n >= P)
        with pytest.raises(crackseg.CracksegError, match="trains a model first"):
            serve(suggest="trained-test")
    with pytest.raises(crackseg.UnknownComponentError):
        serve(suggest="dark-test")


# -- the command -----------------------------------------------------------------------------------------------
def test_user_errors_are_one_line_and_exit_2(tmp_path, photos, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    cases = [
        (["annotate", str(tmp_path / "missing"), "--out", str(tmp_path / "l")], "photo folder not found"),
        (["annotate", str(empty), "--out", str(tmp_path / "l")], "no photos found"),
        (["annotate", str(photos), "--out", str(photos)], "is the photo folder itself"),
        (["annotate", str(photos), "--out", str(photos / "notes.txt")], "is a file"),
        (["annotate", str(photos), "--out", str(tmp_path / "l"), "--port", str(busy.getsockname()[1]),
          "--no-browser"], "is in use"),
        (["annotate", str(photos), "--out", str(tmp_path / "l"), "--patch-size", "2"], "--patch-size"),
    ]
    try:
        for args, words in cases:
            r = run_main(*args)
            assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
            assert r.stderr.startswith("crackseg: error: ") and words in r.stderr, (args, r.stderr)
    finally:
        busy.close()
    monkeypatch.setitem(sys.modules, "skimage.graph", None)  # scikit-image not installed
    r = run_main("annotate", str(photos), "--out", str(tmp_path / "l"), "--no-browser")
    assert r.returncode == 2 and "pip install 'crackseg[annotate]'" in r.stderr
    assert not (tmp_path / "l").exists()  # nothing is written before every check passed


def test_the_command_is_listed_and_loads_its_server_only_when_it_runs(tmp_path):
    code = ("import sys\nfrom crackseg.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('cv2', 'skimage', 'torch', 'crackseg.apps.annotate.server')"
            " if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^\s+annotate\s+Label photos in the browser", r.stdout, re.M), r.stdout
    assert "LOADED []" in r.stdout


def test_the_command_serves_until_interrupted(photos, tmp_path):
    proc, base, token = start_process(photos, tmp_path / "labels")
    try:
        c = Client(base, token)
        assert c.labels("p2", image="crack")[0] == 200
        assert c.get("/api/photos")[1]["progress"] == {"done": 1, "total": 3}
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped: 1 of 3 photos done" in out and not err.strip()


# -- what the labels are for -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_labels_feed_label_with_the_weak_label_gate_and_tune(serve, photos, tmp_path):
    c = serve()
    labels = tmp_path / "labels"
    c.labels("p0", patches=[[0, 64], [32, 64], [64, 64]])
    c.labels("p1", image="no_crack")
    for i in (0, 2):
        c.post(f"/api/photos/p{i}/mask", {"rev": c.rev(f"p{i}"), "op": "trace", "points": crack_points(i), "width": 3})
    check_labels_feed_the_pipeline(photos, labels, tmp_path)


def check_labels_feed_the_pipeline(photos: Path, labels: Path, tmp_path: Path) -> None:
    """``crackseg label --labeler ridge`` and ``crackseg run --labeler ridge`` with the CSV as ``data.weak_labels``
    are gated by it; ``crackseg tune`` reads LABELS_DIR (the traced photos) as it is."""
    pl = tmp_path / "pseudo"
    r = run_main("label", "--labeler", "ridge", "--data", str(photos), "--split", "all", "--out", str(pl),
                 "--set", "data.weak_labels.source=csv", "--set", f"data.weak_labels.path={labels / 'weak_labels.csv'}",
                 "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    weak = read_weak_labels_csv(labels / "weak_labels.csv")
    for stem, w in weak.items():
        label = read_mask(pl / f"{stem}.png")
        gate = w.gate(H, W)
        if gate is not None:
            assert not label[~gate].any(), stem  # nothing where the page said no crack
    assert not read_mask(pl / "p1.png").any()
    ungated = tmp_path / "ungated"
    r = run_main("label", "--labeler", "ridge", "--data", str(photos), "--split", "all", "--out", str(ungated),
                 "--device", "cpu", "-q")
    assert r.returncode == 0 and read_mask(ungated / "p1.png").any()  # the gate, not the photo, made it empty
    # the whole run (labels, one small epoch, predictions, scores against the traced masks) on the same CSV
    run = tmp_path / "run"
    r = run_main("run", "--labeler", "ridge", "--backbone", "unet", "--data", str(photos),
                 "--out", str(run), "--set", "data.weak_labels.source=csv",
                 "--set", f"data.weak_labels.path={labels / 'weak_labels.csv'}", "--set", "backbone.encoder=resnet18",
                 "--set", "train.epochs=1", "--set", "train.batch_size=2", "--set", "train.image_size=64",
                 "--set", "train.num_workers=0", "--device", "cpu", "--quiet")
    assert r.returncode == 0, r.stderr
    assert not read_mask(run / "labels" / "p1.png").any()  # the run's pseudo-labels are gated by the page's labels
    out = tmp_path / "tuned.yaml"
    r = run_main("tune", "--labeler", "ridge", "--data", str(labels), "--split", "all", "--annotated", "5",
                 "--trials", "2", "--out", str(out), "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    assert out.is_file() and "labeler:" in out.read_text()
    assert re.search(r"F 0\.\d+", r.stdout), r.stdout


def test_no_temporaries_or_stray_files_after_a_session(serve, tmp_path):
    c = serve()
    for i in range(3):
        c.labels(f"p{i}", patches=[[0, 0]])
    c.post("/api/photos/p0/mask", {"rev": 1, "op": "trace", "points": crack_points(0)[:2], "width": 3})
    files = sorted(str(p.relative_to(tmp_path / "labels")) for p in (tmp_path / "labels").rglob("*") if p.is_file())
    assert files == [".annotate.lock", "annotations/p0.json", "annotations/p1.json", "annotations/p2.json",
                     "images/p0.png", "masks/p0.png", "weak_labels.csv"]
    assert os.stat(tmp_path / "labels" / "weak_labels.csv").st_size > 0


@pytest.mark.parametrize("text", [
    "stem,x,y,size,label\n# survey\np1,1\np10,0\n\np1,0,0,32,1\n p1 ,32,0,32,0\nold,1\np1,64,0,32,0",
    "p10,1\np2,0\n",
    "p10,1\np2,0",
    "stem,x,y,size,label\n",
    "",
    "stem,x,y,size,label\nstem,1\np1,1\n",
])
@pytest.mark.parametrize("stem", ["p1", "stem", "new"])
def test_a_save_rewrites_the_csv_as_the_csv_module_would(tmp_path, text, stem):
    from crackseg.apps.annotate.weak_csv import _text, read_rows, replace_rows, splice

    rows = [[stem, "1"], [stem, "0", "0", "32", "1"]]
    path = tmp_path / "w.csv"
    path.write_text(text)
    expected = _text(splice(read_rows(path), {stem: rows}))
    replace_rows(path, {stem: rows})  # one plain stem: the text is searched
    assert path.read_text() == expected
    from crackseg.data.weak_labels import read_csv

    labels, lines = read_csv(path)[stem]
    assert labels.image is True and [(p.x, p.y, p.crack) for p in labels.patches] == [(0, 0, True)]
    assert len(lines) == 2  # the stem's old rows are gone
