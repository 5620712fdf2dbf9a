"""The ``crackseg annotate`` command: check everything, open the labels folder, serve the page until Ctrl-C."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crackseg.base.errors import CracksegError

if TYPE_CHECKING:
    from crackseg.apps.annotate.server import AnnotateServer

# the server's modules (numpy, OpenCV, the labels stage) are imported when the command runs: `crackseg --help`
# lists this command without them

INSTALL_HINT = "pip install 'crackseg[annotate]'"
#: the port tried first when --port is not given (any free port when it is taken)
DEFAULT_PORT = 8765


def require_extra() -> None:
    """One line naming the extra when scikit-image (the minimal-path search) is missing."""
    try:
        import skimage.graph  # noqa: F401
    except ImportError:
        raise CracksegError(f"crackseg annotate needs scikit-image (tracing cracks); {INSTALL_HINT}") from None


def open_server(photos_dir: str | Path, out: str | Path, *, patch_size: int = 64, port: int | None = 0,
                suggest: str | None = None, host: str = "127.0.0.1", token: str | None = None) -> AnnotateServer:
    """A ready (not yet serving) annotate server for ``photos_dir`` saving into ``out``; every problem first.

    ``port`` None: :data:`DEFAULT_PORT`, or any free port when that one is taken.
    """
    from crackseg.apps.annotate.api import AnnotateApi
    from crackseg.apps.annotate.photos import PhotoSet
    from crackseg.apps.annotate.server import AnnotateServer
    from crackseg.apps.annotate.store import LabelStore
    from crackseg.apps.annotate.suggest import Responses

    photos = PhotoSet(photos_dir)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CracksegError(f"--out {out}: is a file; give a folder for the labels")
    if out.resolve() == photos.folder.resolve():
        raise CracksegError(f"--out {out}: is the photo folder itself; give the labels a folder of their own "
                            f"(e.g. --out {photos.folder.name}-labels)")
    if patch_size < 1:
        raise CracksegError(f"--patch-size {patch_size}: give a positive number of pixels")
    require_extra()
    responses = Responses(photos, suggest)
    store = LabelStore(out, photos, patch_size)
    api = AnnotateApi(photos, store, responses)
    if port is None:
        try:
            server = AnnotateServer(api, host, DEFAULT_PORT, token)
        except CracksegError:
            server = AnnotateServer(api, host, 0, token)
    else:
        server = AnnotateServer(api, host, port, token)
    try:
        store.open()
    except BaseException:
        server.server_close()
        responses.close()
        raise
    return server


@click.command("annotate")
@click.argument("photos_dir", type=click.Path())
@click.option("--out", required=True, type=click.Path(), metavar="LABELS_DIR",
              help="Where the labels go: weak_labels.csv, masks/<stem>.png (+ images/: a data set of the traced "
                   "photos) and annotations/ (each photo's state); reopening continues there.")
@click.option("--patch-size", type=click.IntRange(min=8), default=64, show_default=True,
              help="Side of the patches, in pixels (a photo keeps the size it was first labelled with).")
@click.option("--port", type=click.IntRange(0, 65535),
              help=f"Port on 127.0.0.1 (default {DEFAULT_PORT}, or any free port when it is taken; 0: any).")
@click.option("--suggest", metavar="LABELER",
              help="A training-free labeler (crackseg list labelers) whose label pre-marks patches and whose map "
                   "guides tracing (default: no suggestions; tracing follows dark lines).")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
def annotate(photos_dir: str, out: str, patch_size: int, port: int | None, suggest: str | None,
             no_browser: bool) -> None:
    """Label photos in the browser: crack patches, crack / no crack / skip per photo, masks traced along cracks.

    Starts a page on 127.0.0.1 whose URL (with its access token) is printed. Every click is saved at
    once in LABELS_DIR (weak_labels.csv, masks/); stopping the server loses nothing, and running the
    command again continues where you stopped. Then, e.g.:

    \b
      crackseg run --data PHOTOS_DIR --set data.weak_labels.source=csv \\
                   --set data.weak_labels.path=LABELS_DIR/weak_labels.csv ...
      crackseg tune --data LABELS_DIR --split all ...     (the photos with a traced mask)
    """
    server = open_server(photos_dir, out, patch_size=patch_size, port=port, suggest=suggest)
    done, total = server.api.store.progress()
    click.echo(f"crackseg annotate: {total} photos in {photos_dir} ({done} done); every change is saved in {out}")
    click.echo(f"open {server.url}")
    click.echo("Ctrl-C stops the server (nothing is lost; run the same command to continue)")
    if not no_browser:
        try:
            webbrowser.open(server.url)
        except Exception:  # noqa: BLE001 - no browser here: the printed URL is enough
            click.echo("(no browser found: open the URL above)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.api.responses.close()
    done, total = server.api.store.progress()
    click.echo(f"stopped: {done} of {total} photos done; labels in {out}")
