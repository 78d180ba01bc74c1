"""The demo page and its JSON API (FastAPI): ``GET /``, ``GET /health``, ``POST /predict``, ``GET /examples/..``.

Why FastAPI with one hand-written page rather than Gradio mounted in FastAPI: the page must work fully offline,
and a single HTML file with inline script and style (served under a Content-Security-Policy that forbids any
other origin) makes that a property we can test, where Gradio's front end pulls web fonts and analytics by
default and is a large extra dependency; the JSON API is FastAPI either way.

Status codes: 413 (upload over the size cap, or a clip longer than the duration cap), 415 (not a media
container), 422 (a media file that cannot be decoded, a transcript that is not UTF-8, or a malformed form),
400 (a ``Host`` this server does not answer to: DNS rebinding), 403 (a POST from a page of another origin);
each with ``{"detail": message}``.
"""
from __future__ import annotations

import asyncio
import importlib.resources
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartParser
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigpt4.extract import MediaError
from minigpt4.extract.media import ClipTooLong
from minigpt4.serving.predictor import ClientGone, Example
from minigpt4.serving.uploads import (
    UnsupportedMedia,
    UploadTooLarge,
    display_id,
    stored_upload,
)

DEFAULT_MAX_UPLOAD_MB = 50
DEFAULT_MAX_CLIP_SECONDS = 60.0
"""Longest clip the page analyses: an utterance lasts seconds; a longer upload would hold the one model lock
(and memory growing with duration) for every other user."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
"""The ``Host`` values a server bound to this machine answers to (others: DNS rebinding)."""
# Everything the page loads comes from this server; images are inline data URLs.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'; media-src 'self' blob:; form-action 'none'; base-uri 'none'")


class Serving(Protocol):
    """What the app needs from a predictor (``minigpt4.serving.predictor.Predictor``)."""

    def health(self) -> dict[str, Any]: ...

    def predict(self, path: str | Path, clip_id: str | None = None, transcript: str | None = None,
                visuals: bool = False, max_seconds: float | None = None,
                gone: Callable[[], bool] | None = None) -> dict[str, Any]: ...


class _BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes never gets read past the limit.

    A declared ``Content-Length`` over the limit is refused before reading; a body that grows past it while
    streaming (chunked, or lying about its length) raises ``UploadTooLarge`` out of ``receive``.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": f"request body of {int(length):,} bytes is over the "
                                               f"{self.limit:,}-byte upload limit"}, status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise UploadTooLarge(f"request body is over the {self.limit:,}-byte upload limit")
            return message

        await self.app(scope, counted, send)


class _StrictText(MultiPartParser):
    """Starlette's multipart parser, noting the text fields that are not valid in their charset (it would
    silently read them as Latin-1)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undecodable: list[str] = []

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                bytes(part.data).decode(self._charset or "utf-8")
            except (UnicodeDecodeError, LookupError):
                self.undecodable.append(part.field_name)
        super().on_part_end()


async def read_form(request: Request) -> FormData:
    """The upload form, at most one file and four fields; a text field that is not UTF-8 is a 422."""
    if "multipart/form-data" not in request.headers.get("content-type", ""):
        return await request.form(max_files=1, max_fields=4)
    parser = _StrictText(request.headers, request.stream(), max_files=1, max_fields=4)
    form = await parser.parse()
    if parser.undecodable:
        await form.close()
        raise HTTPException(422, f"the {', '.join(map(repr, parser.undecodable))} field is not UTF-8 text: send the "
                                 "transcript as UTF-8")
    return form


async def watch_disconnect(request: Request, gone: threading.Event) -> None:
    """Set ``gone`` once the client hangs up (Starlette only reports it when asked, so this polls)."""
    while not await request.is_disconnected():
        await asyncio.sleep(0.25)
    gone.set()


def same_origin(request: Request) -> bool:
    """True unless the request carries an ``Origin`` other than this server's (a browser on another site)."""
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def page_html() -> str:
    return (importlib.resources.files("minigpt4") / "assets" / "demo_page.html").read_text(encoding="utf-8")


def create_app(predictor: Serving, examples: Sequence[Example] = (),
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, upload_dir: str | Path | None = None,
               max_clip_seconds: float | None = DEFAULT_MAX_CLIP_SECONDS,
               allowed_hosts: Sequence[str] = LOCAL_HOSTS) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``examples``: clips the page offers (the server's own files; clients pick them by name only).
    ``upload_dir``: where per-request temp folders go (system temp when None).
    ``max_clip_seconds``: longer clips get 413 before they are decoded (None: no limit).
    ``allowed_hosts``: the ``Host`` names the server answers to (``*``: any).
    """
    max_bytes = int(max_upload_mb * 1024 * 1024)
    by_name = {e.name: e for e in examples}
    app = FastAPI(title="Emotion-LLaMA demo", docs_url=None, redoc_url=None, openapi_url=None)
    # Multipart framing adds a few hundred bytes around the file; the file itself is capped exactly below.
    app.add_middleware(_BodyLimit, limit=max_bytes + 64 * 1024)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable]) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, err: UploadTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=413)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return page_html()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {**predictor.health(), "max_upload_bytes": max_bytes, "max_clip_seconds": max_clip_seconds,
                "examples": [{"name": e.name, "label": e.label, "transcript": e.transcript} for e in examples]}

    @app.get("/examples/{name}")
    def example(name: str) -> FileResponse:
        if name not in by_name:
            raise HTTPException(404, f"no example named {name!r}; examples: {', '.join(by_name) or 'none'}")
        return FileResponse(by_name[name].path, filename=name)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        if not same_origin(request):
            raise HTTPException(403, f"cross-origin request from {request.headers['origin']} refused: post from "
                                     "this server's own page, or without an Origin header (curl, scripts)")
        form = await read_form(request)
        try:
            clip = form.get("clip")
            if not isinstance(clip, UploadFile):
                raise HTTPException(422, "expected a multipart form with the clip in a file field named 'clip' "
                                         "(and optionally a 'transcript' text field)")
            transcript = form.get("transcript")
            if transcript is not None and not isinstance(transcript, str):
                raise HTTPException(422, "the 'transcript' field must be text")
            visuals = str(form.get("visuals", "")).lower() in ("1", "true", "yes")
            gone = threading.Event()
            watcher = asyncio.create_task(watch_disconnect(request, gone))
            try:
                return await run_in_threadpool(_predict_upload, clip, transcript, visuals, gone.is_set)
            finally:
                watcher.cancel()
        finally:
            await form.close()

    def _predict_upload(clip: UploadFile, transcript: str | None, visuals: bool,
                        gone: Callable[[], bool]) -> dict[str, Any]:
        try:
            with stored_upload(clip.file, clip.filename, max_bytes, upload_dir) as path:
                try:
                    return predictor.predict(path, display_id(clip.filename), transcript, visuals, max_clip_seconds,
                                             gone)
                except ClientGone as err:
                    raise HTTPException(499, str(err)) from None  # nginx's "client closed request": nobody reads it
                except MediaError as err:
                    # The message names the server's temp file; the client knows the clip by its own name.
                    why = str(err).replace(str(path), clip.filename or "upload")
                    status = 413 if isinstance(err, ClipTooLong) else 422
                    raise HTTPException(status, f"the clip cannot be used: {why}") from None
        except UnsupportedMedia as err:
            raise HTTPException(415, str(err)) from None
        except UploadTooLarge as err:
            raise HTTPException(413, str(err)) from None

    return app
