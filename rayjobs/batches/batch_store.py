"""Files and batches of the Batch API, kept under `storage.path` (a folder or s3://).

    files/<file id>/meta.json      the OpenAI file object, plus its owner
    files/<file id>/content        the bytes as uploaded (or as the service wrote them)
    batches/<batch id>/batch.json  the OpenAI batch object, plus the service's own fields (_...)
    batches/<batch id>/input.jsonl the lines the job serves; job/ its rayjobs output folder

Every change is written before it is answered; memory only caches what storage holds, so a
restarted service finds every file and batch where it left them.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from rayjobs.io.storage import filesystem, join, read_text, retrying, write_bytes

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
BATCH_ID = re.compile(r"^batch_[0-9a-f]{24}$")
FINAL = ("completed", "failed", "cancelled", "expired")


def owner_of(key: str) -> str:
    """Who owns what a key creates: a hash, so storage never holds the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def public(item: dict[str, Any]) -> dict[str, Any]:
    """The object as the API shows it: without the service's own fields."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


class BatchStore:
    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.path = path
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = filesystem(path, self.storage_options)
        self.lock = threading.RLock()
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        for folder, items in (("files", self.files), ("batches", self.batches)):
            where = join(self.root, folder)
            if not self.fs.exists(where):
                continue
            self.fs.invalidate_cache(where)
            for entry in self.fs.ls(where, detail=False):
                name = "meta.json" if folder == "files" else "batch.json"
                text = read_text(self.fs, join(entry, name))
                if text:  # an upload killed before its meta.json never existed
                    item = json.loads(text)
                    items[item["id"]] = item

    def url(self, *parts: str) -> str:
        """A path under storage.path, as the jobs (and fsspec) take it."""
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        inner = join(self.root, *parts)
        return inner if protocol in ("file", "local") else f"{protocol}://{inner}"

    # files
    def add_file(
        self, owner: str, filename: str, purpose: str, content: BinaryIO, size: int
    ) -> dict[str, Any]:
        file_id = f"file-{secrets.token_hex(12)}"
        target = join(self.root, "files", file_id, "content")
        self.fs.makedirs(join(self.root, "files", file_id), exist_ok=True)  # local disk; a no-op on S3
        with self.fs.open(target, "wb") as handle:  # meta.json, written after, is what makes it exist
            while chunk := content.read(1 << 20):
                handle.write(chunk)
        item = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
            "_owner": owner,
            "_created_ns": time.time_ns(),
        }
        return self._save_file(item)

    def add_file_bytes(self, owner: str, filename: str, purpose: str, data: bytes) -> dict[str, Any]:
        return self.add_file(owner, filename, purpose, io.BytesIO(data), len(data))

    def _save_file(self, item: dict[str, Any]) -> dict[str, Any]:
        write_bytes(self.fs, join(self.root, "files", item["id"], "meta.json"), json.dumps(item).encode())
        with self.lock:
            self.files[item["id"]] = item
        return item

    def file(self, file_id: str, owner: str) -> dict[str, Any] | None:
        """The file if it exists and `owner` owns it (else None: others' files are not found)."""
        item = self.files.get(file_id) if FILE_ID.match(file_id) else None
        return item if item and item["_owner"] == owner else None

    def list_files(self, owner: str, purpose: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            mine = [
                f for f in self.files.values() if f["_owner"] == owner and purpose in (None, f["purpose"])
            ]
        return sorted(mine, key=lambda f: f["_created_ns"], reverse=True)

    def content_path(self, file_id: str) -> str:
        return join(self.root, "files", file_id, "content")

    def read_content(self, file_id: str) -> Iterator[bytes]:
        with self.fs.open(self.content_path(file_id), "rb") as handle:
            while chunk := handle.read(1 << 20):
                yield chunk

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            self.files.pop(file_id, None)
        retrying(lambda: self.fs.rm(join(self.root, "files", file_id), recursive=True))

    # batches
    def add_batch(self, item: dict[str, Any]) -> dict[str, Any]:
        item["id"] = f"batch_{secrets.token_hex(12)}"
        item["_created_ns"] = time.time_ns()  # orders batches made within one second
        return self.save_batch(item)

    def save_batch(self, item: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of a batch (callers change copies: a stored version never changes).
        A cancel asked for meanwhile wins over the runner's next step."""
        with self.lock:
            current = self.batches.get(item["id"]) or {}
            if current.get("_cancel") and not item.get("_cancel"):
                item = {**item, "_cancel": True}
            if item.get("_cancel") and item["status"] in ("validating", "in_progress", "finalizing"):
                item = {
                    **item,
                    "status": "cancelling",
                    "cancelling_at": item.get("cancelling_at") or int(time.time()),
                }
            write_bytes(
                self.fs, join(self.root, "batches", item["id"], "batch.json"), json.dumps(item).encode()
            )
            self.batches[item["id"]] = item
        return item

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            return self.save_batch({**copy.deepcopy(self.batches[batch_id]), "_cancel": True})

    def batch(self, batch_id: str, owner: str | None) -> dict[str, Any] | None:
        item = self.batches.get(batch_id) if BATCH_ID.match(batch_id) else None
        return item if item and (owner is None or item["_owner"] == owner) else None

    def list_batches(self, owner: str) -> list[dict[str, Any]]:
        with self.lock:
            mine = [b for b in self.batches.values() if b["_owner"] == owner]
        return sorted(mine, key=lambda b: b["_created_ns"], reverse=True)

    def open_batches(self) -> list[dict[str, Any]]:
        """Copies of the batches not yet final, oldest first, for the runner to change and save."""
        with self.lock:
            found = [copy.deepcopy(b) for b in self.batches.values() if b["status"] not in FINAL]
        return sorted(found, key=lambda b: b["_created_ns"])
