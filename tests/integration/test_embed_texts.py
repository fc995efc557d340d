"""embed_texts end to end on a real local Ray, through the notebook API and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rayjobs
from rayjobs.config.config_error import ConfigError
from tests.integration.inputs import BAD_TEXTS, write_texts
from tests.integration.reference import min_cosine, sentence_transformer_vectors

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def overrides(source, out, *extra):
    return [
        f"input.path={source}",
        "input.id_column=doc_id",
        f"output.path={out}",
        "output.columns=[lang]",
        "input.shard_rows=25",
        "runtime.progress_bars=false",
        "job.max_error_fraction=0.05",
        *extra,
    ]


def test_real_minilm_end_to_end_matches_sentence_transformers(local_ray, tmp_path, minilm_path):
    source = write_texts(tmp_path / "in", rows=120, files=2)
    # batch_size=auto: the actor probes a size and cuts each 25-row block into batches of it.
    auto = ("model.batch_size=auto", "model.max_batch_size=32")
    cfg = rayjobs.compose(
        "embed_texts", overrides(tmp_path / "in", tmp_path / "out", "model=minilm_offline", *auto)
    )
    result = rayjobs.run(cfg)

    good = {i: t for i, t in source.items() if i - 1000 not in BAD_TEXTS}
    assert (result.rows, result.rows_written, result.rows_errored, result.ok) == (120, 117, 3, True)
    data = pq.read_table(tmp_path / "out" / "data")
    assert data.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    assert data.column_names == ["id", "embedding", "truncated", "lang"]
    assert sorted(data["id"].to_pylist()) == sorted(good)
    assert set(data["lang"].to_pylist()) == {"en"}

    by_id = dict(zip(data["id"].to_pylist(), data["embedding"].to_numpy(zero_copy_only=False), strict=True))
    ids = sorted(good)
    ours = np.stack([by_id[i] for i in ids])
    assert min_cosine(ours, sentence_transformer_vectors(minilm_path, [good[i] for i in ids])) >= 0.9999

    errors = pq.read_table(tmp_path / "out" / "errors").to_pylist()
    assert sorted((e["id"], e["stage"], e["reason"]) for e in errors) == [
        (1007, "tokenize", "empty text"),
        (1019, "tokenize", "missing text (null)"),
        (1033, "tokenize", "empty text"),
    ]
    record = json.loads((tmp_path / "out" / "_run.json").read_text())
    assert record["status"] == "done" and record["stats"]["rows_in"] == 120
    assert record["config"]["model"]["path"] == minilm_path
    assert record["stats"]["model_batch_size"] in ({"model": [8]}, {"model": [16]}, {"model": [32]})
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_rerun_is_a_no_op_changed_config_is_refused_overwrite_starts_over(local_ray, tmp_path, tiny_bert):
    write_texts(tmp_path / "in", rows=60, files=1)
    base = overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}")
    first = rayjobs.run(rayjobs.compose("embed_texts", base))
    assert first.rows_written == 57 and not first.already_done
    stamp = (tmp_path / "out" / "_SUCCESS").stat().st_mtime_ns

    again = rayjobs.run(rayjobs.compose("embed_texts", base))
    assert again.already_done and again.rows_written == 57
    assert (tmp_path / "out" / "_SUCCESS").stat().st_mtime_ns == stamp

    with pytest.raises(ConfigError) as caught:
        rayjobs.run(rayjobs.compose("embed_texts", [*base, "model.normalize=true"]))
    assert caught.value.key == "model.normalize" and "job.overwrite=true" in str(caught.value)

    redone = rayjobs.run(
        rayjobs.compose("embed_texts", [*base, "model.normalize=true", "job.overwrite=true"])
    )
    assert redone.rows_written == 57 and not redone.already_done
    vectors = np.stack(pq.read_table(tmp_path / "out" / "data")["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_limit_processes_only_the_first_rows(local_ray, tmp_path, tiny_bert):
    write_texts(tmp_path / "in", rows=60, files=1)
    cfg = rayjobs.compose(
        "embed_texts", overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}", "job.limit=30")
    )
    result = rayjobs.run(cfg)
    assert result.rows == 30 and result.rows_written + result.rows_errored == 30
    assert max(pq.read_table(tmp_path / "out" / "data")["id"].to_pylist()) < 1030


def test_the_model_actor_runs_only_the_model(local_ray, tmp_path, tiny_bert):
    """Ray must not fuse tokenization into the model actor (it would idle the GPU)."""
    write_texts(tmp_path / "in", rows=30, files=1)
    args = overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}")
    stages = [stage["name"] for stage in rayjobs.run(rayjobs.compose("embed_texts", args)).stats["stages"]]
    assert "MapBatches(ModelStage)" in stages, stages
    assert any("tokenize_texts" in name and "ModelStage" not in name for name in stages), stages


def run_cli(job, *args, timeout=240):
    env = {**os.environ, "RAY_ADDRESS": ""}
    return subprocess.run(
        [sys.executable, "-m", f"rayjobs.{job}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_cli_over_the_error_budget_exits_1_and_keeps_what_it_wrote(tmp_path, tiny_bert):
    write_texts(tmp_path / "in", rows=40, files=1)  # 3 bad texts of 40: 7.5% > 5%
    args = overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}", "runtime.num_cpus=2")
    done = run_cli("embed_texts", *args)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "FAILED (error budget exceeded): 37 rows written, 3 errors" in done.stdout
    assert f"-> {tmp_path / 'out'}" in done.stdout
    assert pq.read_table(tmp_path / "out" / "data").num_rows == 37
    assert pq.read_table(tmp_path / "out" / "errors").num_rows == 3
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert json.loads((tmp_path / "out" / "_run.json").read_text())["status"].startswith("failed")


def test_cli_bad_config_exits_2_with_one_line_before_ray_starts(tmp_path, tiny_bert):
    write_texts(tmp_path / "in", rows=10, files=1)
    done = run_cli(
        "embed_texts",
        *overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}", "model.batch_size=0"),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "rayjobs embed_texts: config error: model.batch_size: must be a positive integer or auto, got 0"
    ]
    assert "Ray instance" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()


def test_auto_pools_one_actor_per_core_and_spread_the_blocks_over_them(local_ray, tmp_path, tiny_bert):
    """concurrency: auto on 2 CPUs: two one-thread actors, the shard cut into 2-batch blocks."""
    write_texts(tmp_path / "in", rows=80, files=1)  # 2 x 8 batches: worth a second actor
    args = overrides(tmp_path / "in", tmp_path / "out", f"model.path={tiny_bert}", "model.batch_size=4")
    result = rayjobs.run(rayjobs.compose("embed_texts", args))
    assert result.stats["model_actors"] == {"model": 2}
    [model] = [stage for stage in result.stats["stages"] if stage["name"] == "MapBatches(ModelStage)"]
    assert int(model["summary"].split()[0]) >= 10, model  # 80 rows in blocks of 8: one task each
    ids = pq.read_table(tmp_path / "out" / "data")["id"].to_pylist()
    assert result.rows_written + result.rows_errored == 80 and len(set(ids)) == len(ids)
