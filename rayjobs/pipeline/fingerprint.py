"""What decides a run's results: the whole resolved config minus an explicit list of keys that
cannot change them. A re-run whose fingerprint differs is refused, naming the key that changed."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from rayjobs.config.stage_spec import STAGE_KEYS
from rayjobs.io.shards import InputPlan

# Where and how fast a job runs, and how it reports: never part of the results.
UNFINGERPRINTED = (
    "runtime",
    "job.overwrite",
    "job.progress_interval_s",
    "job.max_error_fraction",
    "input.storage_options",
    "output.path",
    "output.storage_options",
)


def fingerprint_parts(cfg: DictConfig, plan: InputPlan) -> dict[str, Any]:
    """The resolved config minus UNFINGERPRINTED and every stage block's resource keys
    (rayjobs.config.stage_spec.STAGE_KEYS), plus the shape of the input listing."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in UNFINGERPRINTED:
        node, _, leaf = key.rpartition(".")
        parent = tree.get(node) if node else tree
        if isinstance(parent, dict):
            parent.pop(leaf, None)
    for node in tree.values():
        if isinstance(node, dict) and ("_target_" in node or "batch_size" in node):  # a stage block
            for key in STAGE_KEYS:
                node.pop(key, None)
    return {**tree, "input_listing": plan.fingerprint_source()}
