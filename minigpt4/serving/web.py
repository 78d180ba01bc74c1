"""The demo page and its JSON API (FastAPI): ``GET /``, ``GET /health``, ``POST /predict``, ``GET /examples/..``.

Why FastAPI with one hand-written page rather than Gradio mounted in FastAPI: the page must work fully offline,
and a single HTML file with inline script and style (served under a Content-Security-Policy that forbids any
other origin) makes that a property we can test, where Gradio's front end pulls web fonts and analytics by
default and is a large extra dependency; the JSON API is FastAPI either way.

Status codes: 413 (upload over the size cap), 415 (not a media container), 422 (a media file that cannot be
decoded, or a malformed form); each with ``{"detail": message}``.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol, Sequence

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from minigpt4.extract import MediaError
from minigpt4.serving.predictor import Example
from minigpt4.serving.uploads import (
    UnsupportedMedia,
    UploadTooLarge,
    display_id,
    stored_upload,
)

DEFAULT_MAX_UPLOAD_MB = 50
# Everything the page loads comes from this server; images are inline data URLs.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       "connect-src 'self'; media-src 'self' blob:; form-action 'none'; base-uri 'none'")


class Serving(Protocol):
    """What the app needs from a predictor (``minigpt4.serving.predictor.Predictor``)."""

    def health(self) -> dict[str, Any]: ...

    def predict(self, path: str | Path, clip_id: str | None = None, transcript: str | None = None,
                visuals: bool = False) -> dict[str, Any]: ...


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


def page_html() -> str:
    return (importlib.resources.files("minigpt4") / "assets" / "demo_page.html").read_text(encoding="utf-8")


def create_app(predictor: Serving, examples: Sequence[Example] = (),
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, upload_dir: str | Path | None = None) -> FastAPI:
    """The FastAPI app serving ``predictor``.

    ``examples``: clips the page offers (the server's own files; clients pick them by name only).
    ``upload_dir``: where per-request temp folders go (system temp when None).
    """
    max_bytes = int(max_upload_mb * 1024 * 1024)
    by_name = {e.name: e for e in examples}
    app = FastAPI(title="Emotion-LLaMA demo", docs_url=None, redoc_url=None, openapi_url=None)
    # Multipart framing adds a few hundred bytes around the file; the file itself is capped exactly below.
    app.add_middleware(_BodyLimit, limit=max_bytes + 64 * 1024)

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
        return {**predictor.health(), "max_upload_bytes": max_bytes,
                "examples": [{"name": e.name, "label": e.label, "transcript": e.transcript} for e in examples]}

    @app.get("/examples/{name}")
    def example(name: str) -> FileResponse:
        if name not in by_name:
            raise HTTPException(404, f"no example named {name!r}; examples: {', '.join(by_name) or 'none'}")
        return FileResponse(by_name[name].path, filename=name)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        form = await request.form(max_files=1, max_fields=4)
        try:
            clip = form.get("clip")
            if not isinstance(clip, UploadFile):
                raise HTTPException(422, "expected a multipart form with the clip in a file field named 'clip' "
                                         "(and optionally a 'transcript' text field)")
            transcript = form.get("transcript")
            if transcript is not None and not isinstance(transcript, str):
                raise HTTPException(422, "the 'transcript' field must be text")
            visuals = str(form.get("visuals", "")).lower() in ("1", "true", "yes")
            return await run_in_threadpool(_predict_upload, clip, transcript, visuals)
        finally:
            await form.close()

    def _predict_upload(clip: UploadFile, transcript: str | None, visuals: bool) -> dict[str, Any]:
        try:
            with stored_upload(clip.file, clip.filename, max_bytes, upload_dir) as path:
                try:
                    return predictor.predict(path, display_id(clip.filename), transcript, visuals)
                except MediaError as err:
                    # The message names the server's temp file; the client knows the clip by its own name.
                    why = str(err).replace(str(path), clip.filename or "upload")
                    raise HTTPException(422, f"the clip cannot be used: {why}") from None
        except UnsupportedMedia as err:
            raise HTTPException(415, str(err)) from None
        except UploadTooLarge as err:
            raise HTTPException(413, str(err)) from None

    return app
