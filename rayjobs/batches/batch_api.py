"""The OpenAI Batch API over a BatchStore: files and batches under /v1, as OpenAI shapes them.

Every request needs `Authorization: Bearer <key>` (one of the configured keys); what a key
creates only that key sees: another key's files and batches answer 404, as unknown ids do.
Errors are OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

# No `from __future__ import annotations`: FastAPI reads the route functions' annotations at runtime.
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from rayjobs.batches.batch_runner import JOB_OF
from rayjobs.batches.batch_store import FINAL, BatchStore, owner_of, public

OVERHEAD = 1 << 20  # multipart framing allowed on top of the file size limit


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


def build_app(store: BatchStore, keys: list[str], limits: dict[str, int], auth: bool = True):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser

    app = FastAPI(title="rayjobs batches", docs_url=None, redoc_url=None, openapi_url=None)
    most = limits["max_upload_mb"] * 2**20

    def error_body(
        status: int, message: str, code: str | None = None, param: str | None = None
    ) -> JSONResponse:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return JSONResponse(
            {"error": {"message": message, "type": kind, "param": param, "code": code}}, status
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_body(error.status, error.message, error.code, error.param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_body(error.status_code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_body(400, "; ".join(str(e.get("msg")) for e in error.errors())[:500])

    def caller(request: Request) -> str:
        """The owner of what this request may see; 401 without a valid key."""
        if not auth:
            return "anonymous"
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "Missing API key: send Authorization: Bearer <key>", "missing_api_key")
        key = key.strip()
        if not any(hmac.compare_digest(key.encode(), known.encode()) for known in keys):
            raise ApiError(401, "Incorrect API key provided", "invalid_api_key")
        return owner_of(key)

    def my_file(file_id: str, owner: str) -> dict[str, Any]:
        item = store.file(file_id, owner)
        if item is None:
            raise ApiError(404, f"No such File object: {file_id[:80]}", "file_not_found", "file_id")
        return item

    def my_batch(batch_id: str, owner: str) -> dict[str, Any]:
        item = store.batch(batch_id, owner)
        if item is None:
            raise ApiError(404, f"No such Batch object: {batch_id[:80]}", "batch_not_found", "batch_id")
        return item

    def page(items: list[dict[str, Any]], request: Request) -> dict[str, Any]:
        params = request.query_params
        limit = params.get("limit") or "20"
        if not limit.isdigit() or not 1 <= int(limit) <= 10000:
            raise ApiError(
                400, f"limit must be an integer from 1 to 10000, got {limit[:20]!r}", param="limit"
            )
        after = params.get("after")
        if after:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        shown = [public(item) for item in items[: int(limit)]]
        return {
            "object": "list",
            "data": shown,
            "first_id": shown[0]["id"] if shown else None,
            "last_id": shown[-1]["id"] if shown else None,
            "has_more": len(items) > int(limit),
        }

    @app.post("/v1/files")
    async def upload(request: Request) -> dict[str, Any]:
        owner = caller(request)
        declared = request.headers.get("content-length") or ""
        if declared.isdigit() and int(declared) > most + OVERHEAD:
            raise ApiError(413, f"upload of {declared} bytes; the limit is {most} bytes", "file_too_large")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "upload a file as multipart/form-data (fields: file, purpose)")

        async def counted() -> AsyncIterator[bytes]:  # a missing or lying Content-Length is no way round
            seen = 0
            async for chunk in request.stream():
                seen += len(chunk)
                if seen > most + OVERHEAD:
                    raise ApiError(413, f"upload over the limit of {most} bytes", "file_too_large")
                yield chunk

        try:
            form = await MultiPartParser(request.headers, counted(), max_files=1, max_fields=8).parse()
        except MultiPartException as error:
            raise ApiError(400, f"bad multipart upload: {error.message}") from None
        file, purpose = form.get("file"), form.get("purpose")
        if file is None or isinstance(file, str):
            raise ApiError(400, "missing the file field", param="file")
        if purpose != "batch":
            raise ApiError(400, f"purpose must be 'batch', got {str(purpose)[:40]!r}", param="purpose")
        size = file.size or 0
        if size > most:
            raise ApiError(413, f"file of {size} bytes; the limit is {most} bytes", "file_too_large")
        lines = await run_in_threadpool(count_lines, file.file)
        if lines > limits["max_requests_per_file"]:
            raise ApiError(
                400,
                f"the file has {lines} lines; the limit is {limits['max_requests_per_file']}",
                "too_many_requests",
            )
        name = (file.filename or "upload.jsonl").replace("/", "_")[-200:]
        item = await run_in_threadpool(store.add_file, owner, name, "batch", file.file, size)
        return public(item)

    @app.get("/v1/files")
    def list_files(request: Request) -> dict[str, Any]:
        owner = caller(request)
        return page(store.list_files(owner, request.query_params.get("purpose")), request)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str, request: Request) -> dict[str, Any]:
        return public(my_file(file_id, caller(request)))

    @app.get("/v1/files/{file_id}/content")
    def file_content(file_id: str, request: Request) -> StreamingResponse:
        item = my_file(file_id, caller(request))
        return StreamingResponse(store.read_content(item["id"]), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    def delete_file(file_id: str, request: Request) -> dict[str, Any]:
        item = my_file(file_id, caller(request))
        store.delete_file(item["id"])
        return {"id": item["id"], "object": "file", "deleted": True}

    @app.post("/v1/batches")
    async def create_batch(request: Request) -> dict[str, Any]:
        owner = caller(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise ApiError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        endpoint = body.get("endpoint")
        if endpoint not in JOB_OF:
            raise ApiError(
                400,
                f"endpoint must be one of {', '.join(JOB_OF)}, got {str(endpoint)[:60]!r}",
                param="endpoint",
            )
        if body.get("completion_window") != "24h":
            raise ApiError(400, "completion_window must be '24h'", param="completion_window")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items()
            )
        ):
            raise ApiError(
                400, "metadata: at most 16 string keys (64 chars) and values (512 chars)", param="metadata"
            )
        source = my_file(str(body.get("input_file_id") or ""), owner)
        if source["purpose"] != "batch":
            raise ApiError(
                400,
                f"file {source['id']} has purpose {source['purpose']!r}, not 'batch'",
                param="input_file_id",
            )
        now = int(time.time())
        item = {
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": source["id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
            "model": None,
            "usage": None,
            "_owner": owner,
        }
        return public(await run_in_threadpool(store.add_batch, item))

    @app.get("/v1/batches")
    def list_batches(request: Request) -> dict[str, Any]:
        return page(store.list_batches(caller(request)), request)

    @app.get("/v1/batches/{batch_id}")
    def get_batch(batch_id: str, request: Request) -> dict[str, Any]:
        return public(my_batch(batch_id, caller(request)))

    @app.post("/v1/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str, request: Request) -> dict[str, Any]:
        item = my_batch(batch_id, caller(request))
        if item["status"] in FINAL and item["status"] != "cancelled":
            raise ApiError(
                409, f"batch {batch_id} is {item['status']}: it cannot be cancelled", "batch_not_cancellable"
            )
        return public(store.cancel_batch(item["id"]))

    return app


def count_lines(handle) -> int:
    """Non-blank lines of an uploaded file (read through once, then rewound for storing)."""
    handle.seek(0)
    lines = sum(1 for line in handle if line.strip())
    handle.seek(0)
    return lines
