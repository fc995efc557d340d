"""Serve an index over HTTP on Ray Serve: a JSON API and a search page, on 127.0.0.1.

    python -m rayjobs.serve_index index.path=out/photos/index            # http://127.0.0.1:8000/

    GET  /                                  the search page (search box, result grid, thumbnails)
    GET  /api/info                          rows, index kind, metadata columns, whether items are
                                            images, whether they are video frames
    GET  /api/search?q=text&k=10&filter=column:value&collapse=column
                                            a query over the model's token limit is cut to it, and
                                            the answer says "truncated": true; collapse=video keeps
                                            the best frame of each video
    POST /api/search/image?k=10&collapse=column   body: the image bytes (Content-Type image/*)
    GET  /api/items/<position>/thumbnail    a JPEG of an indexed image, or of a video frame (decoded
                                            at its t_start with PyAV, upright); items of the index only
    GET  /api/items/<position>/video        the frame's video file, with byte ranges (Range: bytes=a-b,
                                            a-, -n -> 206; past the end -> 416); one answer carries at
                                            most limits.max_range_mb: a longer range, or a request
                                            with no Range for a bigger file, gets its first part as a
                                            206 with Content-Range (players ask for the rest)

Video results carry "video_url": api/items/<position>/video#t=<t_start>, the page plays it from there.

Bad requests get a 4xx with {"detail": "..."}; the replica keeps serving.
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations at
# runtime, and `Request` is imported inside build_app, where a string annotation cannot find it.
import io
import json
import logging
import posixpath
import re
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any, NoReturn

from omegaconf import DictConfig

from rayjobs.config.config_error import ConfigError

log = logging.getLogger("rayjobs")

UPLOAD_TYPES = ("image/", "application/octet-stream")
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}
BYTE_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.IGNORECASE)  # one range; a list of them is ignored


class Unsatisfiable(ValueError):
    """A byte range that starts past the end of the file (answered 416)."""


def build_app(index_path: str, limits: dict[str, Any], storage_options: dict[str, Any] | None = None):
    """The FastAPI app around one SearchIndex (Ray Serve runs it in its replica)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, Response

    from rayjobs.index.query_encoder import IMAGE_JOBS, QueryError
    from rayjobs.index.search_index import QUERY_ATTRS, SearchIndex
    from rayjobs.io.storage import filesystem

    index = SearchIndex(index_path, storage_options)
    page = resources.files("rayjobs.index").joinpath("search_page.html").read_text()
    images = (index.info.get("model") or {}).get("job") in IMAGE_JOBS
    options = (index.info.get("source") or {}).get("storage_options") or {}  # the items' files'
    app = FastAPI(title="rayjobs search", docs_url=None, redoc_url=None)

    def bad(message: str, status: int = 400, headers: dict[str, str] | None = None) -> HTTPException:
        return HTTPException(status_code=status, detail=message, headers=headers)

    def parse_k(raw: str | None) -> int:
        if raw is None:
            return 10
        k = _row_number(raw)
        if k is None or not 1 <= k <= limits["max_k"]:
            raise bad(f"k must be an integer from 1 to {limits['max_k']}, got {raw[:20]!r}")
        return k

    def parse_filters(raw: list[str]) -> dict[str, str]:
        filters = {}
        for item in raw:
            column, sep, value = item.partition(":")
            if not sep or not column:
                raise bad(f"filter must be column:value, got {item[:50]!r}")
            filters[column] = value
        return filters

    def answer(run, **echo: Any) -> Response:
        started = time.perf_counter()
        try:
            found = run()
        except QueryError as error:
            raise bad(str(error)) from None
        # A text search says whether the query was cut to the model's token limit.
        echo.update({key: found.attrs[key] for key in QUERY_ATTRS if key in found.attrs})
        records = json.loads(found.to_json(orient="records"))
        for record in records:
            if images:
                record["thumbnail"] = f"api/items/{record['position']}/thumbnail"
            if index.videos and record.get("t_start") is not None:  # played from the frame's second
                record["video_url"] = f"api/items/{record['position']}/video#t={record['t_start']:.3f}"
        took = (time.perf_counter() - started) * 1000
        body = {**echo, "results": records, "took_ms": took}
        return Response(json.dumps(body), media_type="application/json")

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return {
            "rows": index.rows,
            "kind": index.spec.kind,
            "columns": index.columns,
            "images": images,
            "videos": index.videos,
            "model": (index.info.get("model") or {}).get("path"),
        }

    @app.get("/api/search")
    def search(request: Request) -> Response:
        params = request.query_params
        query = params.get("q") or ""
        if not query.strip():
            raise bad("empty query: pass q=some text")
        if len(query) > limits["max_query_chars"]:
            raise bad(f"query is {len(query)} characters; the limit is {limits['max_query_chars']}")
        k = parse_k(params.get("k"))
        filters = parse_filters(params.getlist("filter"))
        collapse = params.get("collapse") or None
        return answer(lambda: index.search_text(query, k, filters, collapse), query=query, k=k)

    @app.post("/api/search/image")
    async def search_image(request: Request) -> Response:
        if not images:
            raise bad("this index holds text embeddings: search it with /api/search?q=...")
        kind = request.headers.get("content-type", "")
        if not kind.startswith(UPLOAD_TYPES):
            raise bad(f"upload an image (Content-Type image/*), not {kind[:50]!r}", 415)
        most = limits["max_upload_mb"] * 2**20
        declared = _row_number(request.headers.get("content-length") or "")
        if declared is not None and declared > most:
            raise bad(f"upload of {declared} bytes; the limit is {most}", 413)
        data = bytearray()
        async for chunk in request.stream():  # counted as it arrives: a lying Content-Length is no way round
            data += chunk
            if len(data) > most:
                raise bad(f"upload over the limit of {most} bytes", 413)
        if not data:
            raise bad("empty upload")
        k = parse_k(request.query_params.get("k"))
        filters = parse_filters(request.query_params.getlist("filter"))
        collapse = request.query_params.get("collapse") or None
        return answer(lambda: index.search_image(bytes(data), k, filters, collapse), k=k)

    def item_file(position: str, locate) -> tuple[int, str]:
        """(row, file) of an item, the file as the index names it: never a path from the request."""
        row = _row_number(position)
        if row is None:
            raise bad(f"item must be a row position (a number), got {position[:50]!r}")
        try:
            return row, locate(row)
        except QueryError as error:
            raise bad(str(error), 404) from None

    @app.get("/api/items/{position:path}/thumbnail")  # :path, so "../x" reaches the check below
    def thumbnail(position: str) -> Response:
        row, path = item_file(position, index.video_path if index.videos else index.image_path)
        try:
            if index.videos:
                data = _frame_thumbnail(path, options, index.start_time(row), limits["thumbnail_px"])
            else:
                data = _image_thumbnail(path, options, limits["thumbnail_px"])
        except Exception as error:  # the file moved, or is not an image (a decodable video) after all
            raise bad(f"item {position}: cannot make a thumbnail ({type(error).__name__})", 404) from None
        return Response(data, media_type="image/jpeg")

    @app.get("/api/items/{position:path}/video")
    def video(position: str, request: Request) -> Response:
        _, path = item_file(position, index.video_path)
        fs, full = filesystem(path, options)
        try:
            size = int(fs.size(full))
        except (OSError, ValueError):  # the file moved since the index was built
            raise bad(f"item {position}: its video file is missing", 404) from None
        try:
            first, last, partial = byte_span(
                request.headers.get("range"), size, limits["max_range_mb"] * 2**20
            )
        except Unsatisfiable:
            unsatisfied = {"Content-Range": f"bytes */{size}"}
            raise bad(f"range not satisfiable: the file has {size} bytes", 416, unsatisfied) from None
        try:
            with fs.open(full, "rb") as handle:
                handle.seek(first)
                body = handle.read(last - first + 1)
        except OSError:  # removed or unreadable since the size was asked
            raise bad(f"item {position}: its video file cannot be read", 404) from None
        headers = {"Accept-Ranges": "bytes"}
        if partial:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        kind = VIDEO_TYPES.get(posixpath.splitext(path)[1].lower(), "application/octet-stream")
        return Response(body, status_code=206 if partial else 200, media_type=kind, headers=headers)

    return app


def byte_span(header: str | None, size: int, most: int) -> tuple[int, int, bool]:
    """(first, last, partial): the bytes to answer a Range header (or none) with, at most `most` of
    them (the client asks again for the rest); partial: a 206 with Content-Range, else a 200."""
    span = requested_range(header, size)
    first, last = span or (0, size - 1)
    last = min(last, first + most - 1)
    return first, last, span is not None or last < size - 1


def requested_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a `Range: bytes=...` header for a file of `size` bytes, the end clamped
    to the file; None when there is none or it may be ignored (RFC 9110: another unit, several
    ranges, last before first); Unsatisfiable when it starts past the end."""
    match = BYTE_RANGE.fullmatch((header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = (_byte_number(text) for text in match.groups())
    if first is None:  # a suffix: the last n bytes
        if not last or not size:
            raise Unsatisfiable(header)
        return max(0, size - last), size - 1
    if last is not None and last < first:
        return None
    if first >= size:
        raise Unsatisfiable(header)
    return first, size - 1 if last is None else min(last, size - 1)


def _byte_number(text: str) -> int | None:
    # Past 18 digits it only matters that it is larger than any file (and int() of 5000 digits fails).
    return None if not text else int(text) if len(text) <= 18 else 10**18


def _row_number(raw: str) -> int | None:
    """A plain decimal number, else None (isdigit() alone passes "²" and huge numbers int() refuses)."""
    if not raw or len(raw) > 18 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _image_thumbnail(path: str, storage_options: dict[str, Any], size: int) -> bytes:
    from PIL import Image, ImageOps

    from rayjobs.io.storage import filesystem

    fs, full = filesystem(path, storage_options)
    with fs.open(full, "rb") as handle, Image.open(io.BytesIO(handle.read())) as image:
        return _jpeg(ImageOps.exif_transpose(image).convert("RGB"), size)


def _frame_thumbnail(path: str, storage_options: dict[str, Any], seconds: float, size: int) -> bytes:
    """The frame shown at `seconds` (the first at or after it, as embed_videos sampled it), upright."""
    from PIL import Image

    from operators.video.decode_video import decode_frames, open_video
    from rayjobs.io.storage import filesystem

    fs, full = filesystem(path, storage_options)
    with open_video(full, fs) as container:
        shown = None
        for frame in decode_frames(container, seconds):  # from the keyframe before it
            shown = frame
            if frame.time >= seconds - 1e-3:  # t_start is the sampled frame's time, to the microsecond
                break
        if shown is None:
            raise ValueError(f"no frame at {seconds:.3f} s")
        return _jpeg(Image.fromarray(shown.pixels()), size)


def _jpeg(image, size: int) -> bytes:
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def limits_of(cfg: DictConfig) -> dict[str, Any]:
    keys = ("max_k", "max_query_chars", "max_upload_mb", "thumbnail_px", "max_range_mb")
    limits = {k: cfg.limits[k] for k in keys}
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"limits.{key}", f"must be a positive integer, got {value!r}")
    return limits


def start(cfg: DictConfig) -> str:
    """Deploy on Ray Serve and return the URL; the service runs until Serve shuts down."""
    from ray import serve

    from rayjobs.config.check_config import loopback_http, required
    from rayjobs.index.search_index import SearchIndex
    from rayjobs.pipeline.runtime import start_ray

    required(cfg, "index.path")
    host, port = loopback_http(cfg)
    limits = limits_of(cfg)
    storage = dict(cfg.index.get("storage_options") or {})
    SearchIndex(str(cfg.index.path), storage)  # fail here, with one line, rather than in a replica
    start_ray(cfg.runtime)
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        name="search", num_replicas=int(cfg.replicas), ray_actor_options={"num_cpus": float(cfg.num_cpus)}
    )(SearchService)
    serve.run(
        deployment.bind(str(cfg.index.path), limits, storage),
        name="rayjobs-search",
        route_prefix="/",
        blocking=False,
    )
    return f"http://{host}:{port}/"


class SearchService:
    """A Serve replica holding the index; Serve routes every HTTP request to __call__, which hands
    it to the app of build_app (built here, in the replica, where the index is loaded)."""

    def __init__(self, index_path: str, limits: dict[str, Any], storage_options: dict[str, Any]) -> None:
        self.app = build_app(index_path, limits, storage_options)

    async def __call__(self, request):
        from starlette.responses import Response

        # Hand the ASGI request to our app and collect what it sends back.
        sent: dict[str, Any] = {"body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                sent["body"] += message.get("body", b"")

        await self.app(request.scope, request.receive, send)
        headers = {k.decode(): v.decode() for k, v in sent["headers"] if k.decode() != "content-length"}
        return Response(sent["body"], status_code=sent["status"], headers=headers)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from rayjobs.pipeline.cli import run_cli

    run_cli("serve_index", argv, run=serve_forever, about=__doc__)


def serve_forever(cfg: DictConfig) -> int:
    """Start the service and keep it up until Ctrl-C (a bad config raises ConfigError first)."""
    url = start(cfg)
    print(f"[rayjobs] serving {cfg.index.path} at {url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
    return 0


if __name__ == "__main__":
    main()
