"""The annotate page's HTTP server: the standard library's ThreadingHTTPServer on 127.0.0.1, one token.

Every request needs the token the command prints (``?token=`` in the URL, or the ``X-Crackseg-Token`` header
the page's script sends); without it the answer is 403. Paths are matched against fixed routes; a photo is
named by its stem (looked up in the listing of ``PHOTOS_DIR``) and a static file by its name in the package's
``static/`` listing, so nothing of a request is ever joined into a file path.

Routes (``STEM`` URL-quoted)::

    GET  /                              the page
    GET  /static/NAME                   its script and style
    GET  /api/photos                    the photos, the progress, the settings
    GET  /api/photos/STEM               a photo's state (labels, revision, has_mask)
    GET  /api/photos/STEM/image         the photo
    GET  /api/photos/STEM/mask          its mask as a red overlay PNG (404: none)
    GET  /api/photos/STEM/suggestions   patches the --suggest labeler marks
    POST /api/photos/STEM/labels        {rev, image, patches}: save the labels
    POST /api/photos/STEM/mask          {rev, op: trace | erase, points, width}: edit the mask
    POST /api/photos/STEM/undo          {rev}: undo the last change
"""

from __future__ import annotations

import errno
import hmac
import json
import os
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from crackseg.apps.annotate.api import AnnotateApi, NotFound
from crackseg.apps.annotate.state import InvalidEdit
from crackseg.base.console import one_line, warn
from crackseg.base.errors import CracksegError

#: the most a request body may hold
MAX_BODY = 8 * 2**20
TOKEN_HEADER = "X-Crackseg-Token"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
_ROUTE = re.compile(r"^/api/photos/([^/]+)(?:/(image|mask|suggestions|labels|undo))?$")
_SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
             "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                                        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files by name: ``static/`` of this package, read once."""
    out = {}
    for entry in resources.files("crackseg.apps.annotate").joinpath("static").iterdir():
        suffix = os.path.splitext(entry.name)[1]
        if entry.is_file() and suffix in _TYPES and not entry.name.startswith("."):
            out[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return out


def new_token() -> str:
    return secrets.token_hex(24)


class AnnotateServer(ThreadingHTTPServer):
    """The server of one annotate page; ``url`` is what the user opens (with the token)."""

    daemon_threads = True
    # on Windows SO_REUSEADDR would let a second server take a port in use
    allow_reuse_address = os.name != "nt"

    def __init__(self, api: AnnotateApi, host: str = "127.0.0.1", port: int = 0, token: str | None = None) -> None:
        self.api = api
        self.host = host
        self.token = token or new_token()
        self.static = static_files()
        try:
            super().__init__((host, port), Handler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES, getattr(errno, "WSAEADDRINUSE", -1)):
                raise CracksegError(f"port {port} on {host} is in use (or not allowed): choose another --port, or "
                                    f"leave --port out for a free one") from None
            raise CracksegError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/?token={self.token}"

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (tests, scripts); ``shutdown()`` stops it."""
        thread = threading.Thread(target=self.serve_forever, name="crackseg-annotate", daemon=True)
        thread.start()
        return thread


class Handler(BaseHTTPRequestHandler):
    """One request: token, route, the :class:`AnnotateApi` call, the reply."""

    server: AnnotateServer
    protocol_version = "HTTP/1.1"
    #: seconds a connection may stay silent (a page keeps its connection open between requests)
    timeout = 120
    server_version = "crackseg-annotate"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: request lines carry the token."""

    # -- replies -------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for k, v in _SECURITY.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    # -- checks --------------------------------------------------------------------------------------------
    def _authorised(self, query: dict[str, list[str]]) -> bool:
        given = self.headers.get(TOKEN_HEADER) or (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.server.token.encode("utf-8"))

    def _body(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise InvalidEdit("send a JSON body with its Content-Length") from None
        if not 0 < length <= MAX_BODY:
            raise InvalidEdit(f"the body must hold 1 to {MAX_BODY} bytes, not {length}")
        try:
            body = json.loads(self.rfile.read(length))
        except (ValueError, UnicodeDecodeError):
            raise InvalidEdit("the body is not JSON") from None
        if not isinstance(body, dict):
            raise InvalidEdit("the body must be a JSON object")
        return body

    # -- methods -------------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._error(405, "method not allowed")

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if method == "POST":  # a refused body may be left unread: no second request on this connection
            self.close_connection = True
        if not self._authorised(query):
            self._error(403, "this page needs the token that crackseg annotate printed (open the URL it printed)")
            return
        try:
            self._route(method, parts.path)
        except NotFound as exc:
            self._error(404, str(exc))
        except InvalidEdit as exc:
            self._error(400, str(exc))
        except CracksegError as exc:
            self._error(500, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - the page gets one line, the server keeps serving
            warn(f"annotate: {self.command} {parts.path}: {one_line(exc)}")
            self._error(500, one_line(exc))

    def _route(self, method: str, path: str) -> None:
        api = self.server.api
        if method == "GET" and path in ("/", "/index.html"):
            page, kind = self.server.static["index.html"]
            self._send(200, page.replace(b"__TOKEN__", self.server.token.encode("ascii")), kind)
            return
        if method == "GET" and path.startswith("/static/"):
            found = self.server.static.get(path[len("/static/"):])
            if found is None or path.endswith("index.html"):
                raise NotFound(f"no file {path}")
            self._send(200, found[0], found[1])
            return
        if path == "/api/photos" and method == "GET":
            self._json(*api.listing())
            return
        m = _ROUTE.match(path)
        if m is None:
            raise NotFound(f"nothing at {path}")
        stem, what = unquote(m.group(1)), m.group(2)
        if method == "GET":
            if what is None:
                self._json(*api.photo(stem))
            elif what == "image":
                data, kind = api.image(stem)
                self._send(200, data, kind, cache="private, max-age=3600")
            elif what == "mask":
                self._send(200, api.mask_overlay(stem), "image/png")
            elif what == "suggestions":
                self._json(*api.suggestions(stem))
            else:
                self._error(405, f"{what}: POST only")
            return
        handlers = {"labels": api.save_labels, "mask": api.edit_mask, "undo": api.undo}
        if what not in handlers:
            self._error(405, "GET only")
            return
        self._json(*handlers[what](stem, self._body()))
