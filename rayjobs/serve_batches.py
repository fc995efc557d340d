"""An OpenAI-compatible Batch API on your own cluster: files in, batches run as rayjobs jobs.

    python -m rayjobs.serve_batches storage.path=batches/ api_keys=[my-key]   # http://127.0.0.1:8001/v1

    POST /v1/files (multipart: file, purpose=batch)  GET /v1/files  GET|DELETE /v1/files/{id}
    GET  /v1/files/{id}/content
    POST /v1/batches {input_file_id, endpoint, completion_window: 24h, metadata}
    GET  /v1/batches[?limit&after]  GET /v1/batches/{id}  POST /v1/batches/{id}/cancel

Endpoints served: /v1/chat/completions (generate_text) and /v1/embeddings (embed_texts); body.model
names one of `models`. State lives under storage.path: a restarted service loses nothing, and
resumes or adopts the batches that were running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, NoReturn

from omegaconf import DictConfig, OmegaConf

from rayjobs.config.config_error import ConfigError

log = logging.getLogger("rayjobs")

LIMITS = ("max_upload_mb", "max_requests_per_file", "max_running")


def api_keys(cfg: DictConfig) -> list[str]:
    keys = [str(k) for k in cfg.get("api_keys") or []]
    keys += [k.strip() for k in os.environ.get("RAYJOBS_API_KEYS", "").split(",") if k.strip()]
    if cfg.auth and not keys:
        raise ConfigError("api_keys", "no API key: set api_keys=[...] or RAYJOBS_API_KEYS (or auth=false)")
    return keys


def models_of(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    from rayjobs.config.compose import CONF_DIR

    models = OmegaConf.to_container(cfg.models, resolve=True) or {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or not (entry.get("preset") or entry.get("path")):
            raise ConfigError(f"models.{name}", "needs a preset (conf/model/<name>.yaml) and/or a path")
        preset = entry.get("preset")
        if preset and not (CONF_DIR / "model" / f"{preset}.yaml").is_file():
            raise ConfigError(f"models.{name}.preset", f"no model preset {preset!r} in {CONF_DIR / 'model'}")
    return models


def limits_of(cfg: DictConfig) -> dict[str, int]:
    limits = {key: cfg.limits[key] for key in LIMITS}
    for key, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"limits.{key}", f"must be a positive integer, got {value!r}")
    return limits


def build(cfg: DictConfig):
    """(app, runner) for a config; every check here, before anything starts."""
    from rayjobs.batches.batch_api import build_app
    from rayjobs.batches.batch_runner import BatchRunner
    from rayjobs.batches.batch_store import BatchStore
    from rayjobs.config.check_config import loopback_http, required

    required(cfg, "storage.path")
    loopback_http(cfg)
    keys, models, limits = api_keys(cfg), models_of(cfg), limits_of(cfg)
    shard_rows = cfg.jobs.shard_rows
    if isinstance(shard_rows, bool) or not isinstance(shard_rows, int) or shard_rows < 1:
        raise ConfigError("jobs.shard_rows", f"must be a positive integer, got {shard_rows!r}")
    store = BatchStore(str(cfg.storage.path), dict(cfg.storage.get("storage_options") or {}))
    runner = BatchRunner(
        store,
        models,
        max_lines=limits["max_requests_per_file"],
        max_running=limits["max_running"],
        shard_rows=shard_rows,
        job_overrides=list(cfg.jobs.overrides or []),
        address=cfg.runtime.get("address") or os.environ.get("RAY_ADDRESS") or None,
    )
    return build_app(store, keys, limits, auth=bool(cfg.auth)), runner


def serve_forever(cfg: DictConfig) -> int:
    import uvicorn

    app, runner = build(cfg)
    runner.start()
    url = f"http://{cfg.http.host}:{cfg.http.port}/v1"
    print(f"[rayjobs] Batch API at {url}, state in {cfg.storage.path} (Ctrl-C stops)", flush=True)
    try:  # uvicorn stops on SIGINT / SIGTERM after the requests in flight
        uvicorn.run(app, host=str(cfg.http.host), port=int(cfg.http.port), log_level="warning")
    finally:
        runner.stop()  # running jobs go on; a restarted service adopts them
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from rayjobs.pipeline.cli import run_cli

    run_cli("serve_batches", argv, run=serve_forever, about=__doc__)


if __name__ == "__main__":
    main()
