"""Turn a model reference (hub id, local folder, fsspec URL) into a local folder, once per node."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "*.py"]
# What names a checkpoint folder: a transformers model's config, or a diffusers pipeline's index.
CONFIG_FILES = ("config.json", "model_index.json")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def cache_root() -> Path:
    return Path(os.environ.get("RAYJOBS_CACHE", Path.home() / ".cache" / "rayjobs"))


def local_model_dir(path: str, revision: str | None = None) -> str:
    """A local folder holding the checkpoint; remote copies are made once per node."""
    path = str(path)
    if "://" in path and not path.startswith("file://"):
        return _copy_remote(path)
    local = Path(path.removeprefix("file://")).expanduser()
    if local.is_dir():
        return str(local)
    if not HUB_ID.match(path):
        raise FileNotFoundError(f"model path {path!r} is neither a folder nor a hub id")
    from huggingface_hub import snapshot_download

    # HF's cache is per node and locked per file: actors on one node share one download.
    return snapshot_download(path, revision=revision, allow_patterns=WEIGHT_PATTERNS)


def _copy_remote(url: str) -> str:
    import fsspec

    target = cache_root() / "models" / hashlib.sha256(url.encode()).hexdigest()[:16]
    done = target / ".complete"
    if done.exists():
        return str(target)
    lock = target.with_suffix(".lock")
    target.parent.mkdir(parents=True, exist_ok=True)
    # One copier per node: the others wait for its marker instead of fetching again.
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if done.exists():
                return str(target)
            if time.time() - lock.stat().st_mtime > 3600:
                lock.unlink(missing_ok=True)
            time.sleep(0.5)
    try:
        fs, root = fsspec.core.url_to_fs(url)
        fs.get(root.rstrip("/") + "/", str(target) + "/", recursive=True)
        done.touch()
    finally:
        os.close(fd)
        lock.unlink(missing_ok=True)
    return str(target)


def check_model_reference(path: str) -> str | None:
    """Why `path` cannot name a model, without downloading or loading anything; None if fine."""
    path = str(path)
    if "://" in path and not path.startswith("file://"):
        return None
    local = Path(path.removeprefix("file://")).expanduser()
    if local.is_dir():
        if not any((local / name).is_file() for name in CONFIG_FILES):
            return (
                f"{path!r} is a folder without config.json or model_index.json "
                "(neither a transformers checkpoint nor a diffusers pipeline)"
            )
        return None
    if local.exists():
        return f"{path!r} is a file; give the checkpoint's folder"
    if path.startswith(("/", ".", "~")) or not HUB_ID.match(path):
        return f"{path!r} does not exist"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(path, name), str) for name in CONFIG_FILES):
            return f"hub id {path!r} is not in the local cache and HF_HUB_OFFLINE=1"
    return None
