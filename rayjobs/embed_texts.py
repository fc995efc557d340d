"""Embed texts: one vector per row of a Parquet text column.

    python -m rayjobs.embed_texts input.path=texts.parquet input.text_column=text output.path=out/

read shards (Ray tasks) -> tokenize + length-sort (CPU tasks) -> TextEmbedder (actor pool,
one model per actor, on a GPU when the cluster has one) -> write Parquet: data/ (id, embedding,
truncated, output.columns), errors/ (id, stage, reason), then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.text.tokenize_texts import tokenize_texts
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results


def run(cfg: DictConfig) -> RunResult:
    text = cfg.input.text_column
    models = {"model": (("input_ids",), ("embedding",))}  # model stage: (its inputs, what we need)
    job = start_job(cfg, models=models, columns=[("input.text_column", text)])
    if job.result:  # this exact job already finished in output.path
        return job.result
    keep = list(cfg.output.columns)

    rows = job.read(columns=[text, *keep])
    tokens = rows.map_batches(
        tokenize_texts,
        fn_kwargs={
            "model_path": cfg.model.path,
            "revision": cfg.model.get("revision"),
            "text_column": text,
            "keep_text": text in keep,
        },
        **job.task_args(),
    )
    embedded = job.feed(tokens).map_batches(ModelStage, **job.model_args())
    manifest = embedded.map_batches(write_results, **job.write_args(["embedding", "truncated"]))
    return job.finish(manifest)


def main() -> None:
    run_cli("embed_texts")


if __name__ == "__main__":
    main()
