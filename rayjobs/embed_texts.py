"""Embed texts: one vector per row of a Parquet text column (or per /v1/embeddings line of an
OpenAI Batch file, input.format=openai_batch).

    python -m rayjobs.embed_texts input.path=texts.parquet input.text_column=text output.path=out/

read shards (Ray tasks) -> tokenize + length-sort (CPU tasks) -> TextEmbedder (actor pool,
one model per actor, on a GPU when the cluster has one) -> write Parquet: data/ (id, embedding,
truncated, output.columns), errors/ (id, stage, reason); for OpenAI Batch input also output.jsonl
in the OpenAI Batch output format. Then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.text.openai_requests import embedding_requests
from operators.text.tokenize_texts import tokenize_texts
from rayjobs.io.openai_output import EMBEDDINGS, write_openai_output
from rayjobs.io.text_lines import RAW_LINE
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import JobRun, RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results


def run(cfg: DictConfig) -> RunResult:
    openai = cfg.input.format == "openai_batch"  # /v1/embeddings request lines
    text = "text" if openai else cfg.input.text_column
    models = {"model": (("input_ids",), ("embedding",))}  # model stage: (its inputs, what we need)
    column = ("input.format", RAW_LINE) if openai else ("input.text_column", text)
    job = start_job(cfg, models=models, columns=[column])
    if not job.result:  # else this exact job already finished in output.path
        job.result = embed(job, cfg, text, openai)
    if openai:
        write_openai_output(job.fs, job.root, str(cfg.model.path), EMBEDDINGS)
    return job.result


def embed(job: JobRun, cfg: DictConfig, text: str, openai: bool) -> RunResult:
    keep = list(cfg.output.columns)
    rows = job.read(columns=[RAW_LINE if openai else text, *keep])
    if openai:
        rows = rows.map_batches(embedding_requests, **job.task_args())
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
    extra = ["custom_id", "model", "encoding_format", "prompt_tokens"] if openai else []
    results = ["embedding", "truncated", *extra]
    manifest = embedded.map_batches(write_results, **job.write_args(results, error_columns=extra[:2]))
    return job.finish(manifest)


def main() -> None:
    run_cli("embed_texts")


if __name__ == "__main__":
    main()
