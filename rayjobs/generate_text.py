"""Generate text: completions of a causal LM for every prompt of a prompt list.

    python -m rayjobs.generate_text input.path=prompts.jsonl input.format=openai_batch output.path=out/

read shards of Parquet / CSV / JSONL / an OpenAI Batch file (Ray tasks) -> build prompts: column
or template, system prompt, the model's chat template, per-row parameters and output constraint
(prompt.json_schema / regex / choices, or a batch line's response_format); length-sorted (CPU, in
the read task) -> TextGenerator (actor pool; llguidance masks constrained rows' tokens) -> write
Parquet: data/ (id, completions, finish_reasons, completion_tokens, prompt_tokens, + json when
completions are JSON), errors/; for OpenAI Batch input also
output.jsonl in the OpenAI Batch output format. Then the run record and _SUCCESS.
"""

from __future__ import annotations

from omegaconf import DictConfig

from operators.text.build_prompts import build_prompts
from operators.text.output_grammar import is_json
from operators.text.prompt_template import template_columns
from rayjobs.config.output_constraint import output_constraint
from rayjobs.io.openai_output import write_openai_output
from rayjobs.io.text_lines import RAW_LINE
from rayjobs.pipeline.cli import run_cli
from rayjobs.pipeline.job_run import RunResult, start_job
from rayjobs.pipeline.model_stage import ModelStage
from rayjobs.pipeline.write_results import write_results

RESULTS = ["completions", "finish_reasons", "completion_tokens", "prompt_tokens"]


def run(cfg: DictConfig) -> RunResult:
    openai = cfg.input.format == "openai_batch"
    prompt = cfg.prompt
    constraint = output_constraint(cfg)
    if openai:
        needed, key = [RAW_LINE], "input.format"
    elif prompt.template:
        needed, key = template_columns(prompt.template), "prompt.template"
    else:
        needed, key = [prompt.column], "prompt.column"
    inputs = ("input_ids", "max_new_tokens", "temperature", "top_p", "n", "seed", "constraint")
    results = [*RESULTS, "json"] if openai or is_json(constraint) else RESULTS
    models = {"model": (inputs, tuple(results))}
    job = start_job(cfg, models=models, columns=[(key, name) for name in needed])
    if not job.result:
        rows = job.read(columns=[*needed, *cfg.output.columns])
        prompts = rows.map_batches(
            build_prompts,
            fn_kwargs={
                "model_path": cfg.model.path,
                "revision": cfg.model.get("revision"),
                "prompt_column": prompt.column,
                "template": prompt.template,
                "system": prompt.system,
                "chat_template": prompt.chat_template,
                "openai": openai,
                "max_new_tokens": cfg.model.get("max_new_tokens"),
                "truncate": bool(prompt.get("truncate")),
                "constraint": constraint,
            },
            **job.task_args(),
        )
        generated = job.feed(prompts).map_batches(ModelStage, **job.model_args())
        extra = ["custom_id", "model"] if openai else []
        manifest = generated.map_batches(
            write_results, **job.write_args(results + extra, error_columns=extra)
        )
        job.result = job.finish(manifest)
    if openai:
        write_openai_output(job.fs, job.root, str(cfg.model.path))
    return job.result


def main() -> None:
    run_cli("generate_text")


if __name__ == "__main__":
    main()
