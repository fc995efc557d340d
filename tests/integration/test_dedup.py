"""dedup on real Ray over an embedding output with planted near-duplicate groups and exact text
duplicates: every row accounted for, the same kept rows from 1 and 8 shards, build_index over
the kept set, exact file duplicates of an image folder, and bad configs named before Ray."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rayjobs
from benchmarks.synthetic import plant_duplicates, texts
from operators.arrow_tensors import tensor_to_arrow
from rayjobs.config.config_error import ConfigError
from rayjobs.index.search_index import SearchIndex

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
MODEL = {"_target_": "operators.TextEmbedder", "path": "/models/minilm", "normalize": True}
EXACT_COPIES = 60  # rows that repeat another row's text (and so its vector)


def write_embedding_output(folder, table: pa.Table, record: dict, files: int = 3) -> None:
    """What an embedding job leaves: data/part-*.parquet, _run.json and _SUCCESS."""
    (folder / "data").mkdir(parents=True)
    for part, rows in enumerate(np.array_split(np.arange(table.num_rows), files)):
        pq.write_table(table.take(pa.array(rows)), folder / "data" / f"part-{part:06d}.parquet")
    (folder / "_run.json").write_text(json.dumps(record))
    (folder / "_SUCCESS").write_text("")


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    """(folder, DataFrame of the input, group of each row): near groups of 2..6 planted in 1,500
    random 32-d vectors, then 60 rows that copy another row's text and vector exactly."""
    rng = np.random.default_rng(11)
    vectors, group = plant_duplicates(rng.normal(size=(1500, 32)), fraction=0.2, seed=12)
    text = texts(len(vectors), seed=13)
    copied = rng.choice(len(vectors), EXACT_COPIES, replace=False)
    vectors = np.concatenate([vectors, vectors[copied]])
    group = np.concatenate([group, group[copied]])
    text = text + [text[i] for i in copied]
    rows = len(vectors)
    table = pa.table(
        {
            "id": [f"doc-{i:05d}" for i in range(rows)],
            "embedding": tensor_to_arrow(vectors.astype(np.float32)),
            "text": text,
            "quality": rng.random(rows),
        }
    )
    folder = tmp_path_factory.mktemp("dedup") / "emb"
    record = {"job": "embed_texts", "config": {"job": {"name": "embed_texts"}, "model": MODEL, "input": {}}}
    write_embedding_output(folder, table, record, files=1)
    return folder, table.to_pandas(), group


def dedup(source, out, *extra):
    args = [f"input.path={source}", f"output.path={out}", "runtime.progress_bars=false", *extra]
    return rayjobs.run(rayjobs.compose("dedup", args))


def outputs(result):
    return result.to_pandas(), result.filtered()


def test_kept_and_filtered_are_the_input_with_one_row_kept_per_group(local_ray, embeddings, tmp_path):
    source, rows, group = embeddings
    one = dedup(source, tmp_path / "one", f"input.shard_rows={len(rows)}")
    eight = dedup(source, tmp_path / "eight", f"input.shard_rows={-(-len(rows) // 8)}")
    assert (one.stats["shards"], eight.stats["shards"]) == (1, 8)
    kept, dropped = outputs(one)
    assert sorted(outputs(eight)[0]["id"]) == sorted(kept["id"])  # same kept rows however sharded
    assert sorted([*kept["id"], *dropped["id"]]) == sorted(rows["id"])  # every row exactly once

    by_id = rows.set_index("id")
    groups = pd.Series(group, index=rows["id"])
    assert groups[kept["id"]].is_unique and set(groups[kept["id"]]) == set(group)  # one per group
    assert list(kept.columns) == ["id", "embedding", "text", "quality"]  # every column, embedding too
    first = {g: i for i, g in reversed(list(enumerate(group)))}
    assert all(rows["id"][first[g]] == i for g, i in zip(groups[kept["id"]], kept["id"], strict=True))

    assert set(dropped.columns) >= {"id", "stage", "reason", "duplicate_of", "similarity", "rule"}
    assert (groups[dropped["duplicate_of"]].values == groups[dropped["id"]].values).all()
    exact = dropped[dropped["rule"] == "exact_text"]
    near = dropped[dropped["rule"] == "near_duplicate>=0.95"]
    assert len(exact) + len(near) == len(dropped) and len(exact) >= 20
    # exact: the kept row has the same text (a copy of a row its near group does not keep is near)
    same_text = by_id.loc[dropped["id"], "text"].values == by_id.loc[dropped["duplicate_of"], "text"].values
    assert ((dropped["rule"] == "exact_text").values == same_text).all()
    assert (exact["similarity"] == 1.0).all()
    assert near["similarity"].between(0.95, 1.0001).all()
    unit = np.stack(by_id.loc[near["id"], "embedding"].to_list())
    other = np.stack(by_id.loc[near["duplicate_of"], "embedding"].to_list())
    cosine = np.sum(unit * other, 1) / np.linalg.norm(unit, axis=1) / np.linalg.norm(other, axis=1)
    np.testing.assert_allclose(near["similarity"], cosine, atol=1e-5)
    counts = one.stats["dedup"]
    assert counts["exact_duplicates"] == len(exact) and counts["near_duplicates"] == len(near)
    assert counts["kept"] == len(kept) == one.rows_written and one.rows_filtered == len(dropped)

    index = tmp_path / "index"
    built = rayjobs.run(
        rayjobs.compose("build_index", [f"input.path={tmp_path / 'one'}", f"index.path={index}"])
    )
    assert built.rows == len(kept)
    info = json.loads((index / "index.json").read_text())
    assert info["model"]["job"] == "embed_texts" and info["model"]["path"] == MODEL["path"]  # the embedder
    found = SearchIndex(str(index)).search_vector(np.array(kept["embedding"][7]), k=1)
    assert found["id"].tolist() == [kept["id"][7]]


def test_keep_highest_column_keeps_each_groups_top_row(local_ray, embeddings, tmp_path):
    source, rows, group = embeddings
    kept, dropped = outputs(dedup(source, tmp_path / "out", "dedup.keep=highest:quality", "dedup.exact=none"))
    best = rows.assign(group=group).sort_values("quality").groupby("group")["id"].last()
    assert sorted(kept["id"]) == sorted(best)
    assert set(dropped["rule"]) == {"near_duplicate>=0.95"}  # identical texts found by the search alone


def test_identical_image_files_are_exact_duplicates(local_ray, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(5)
    blobs = [rng.bytes(300) for _ in range(4)]
    names = [f"img-{i}.jpg" for i in range(10)]
    for i, name in enumerate(names):
        (photos / name).write_bytes(blobs[i % 4])  # 0, 4, 8 alike; 1, 5, 9 alike; ...
    table = pa.table(
        {"id": names, "embedding": tensor_to_arrow(rng.normal(size=(10, 16)).astype(np.float32))}
    )
    config = {"job": {"name": "embed_images"}, "input": {"format": "images", "path": str(photos)}}
    write_embedding_output(tmp_path / "emb", table, {"config": config}, files=2)
    kept, dropped = outputs(dedup(tmp_path / "emb", tmp_path / "out"))
    assert sorted(kept["id"]) == names[:4]
    assert dict(zip(dropped["id"], dropped["duplicate_of"], strict=True)) == {
        names[i]: names[i % 4] for i in range(4, 10)
    }
    assert set(dropped["rule"]) == {"exact_file"} and (dropped["similarity"] == 1.0).all()


def test_bad_configs_fail_before_ray_naming_the_key(embeddings, tmp_path):
    source = embeddings[0]
    (tmp_path / "texts").mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello"]}), tmp_path / "texts" / "part.parquet")
    (tmp_path / "unfinished" / "data").mkdir(parents=True)
    (tmp_path / "unfinished" / "_run.json").write_text('{"job": "embed_texts", "status": "running"}')
    cases = [
        ([f"input.path={source}", "dedup.threshold=1.5"], r"dedup.threshold: must be a cosine in \(0, 1\]"),
        ([f"input.path={source}", "dedup.threshold=0"], "dedup.threshold"),
        ([f"input.path={source}", "dedup.keep=shortest"], "dedup.keep: must be one of"),
        ([f"input.path={source}", "dedup.keep=highest:missing"], "dedup.keep: no column 'missing'"),
        ([f"input.path={source}", "dedup.keep=highest:text"], "dedup.keep: highest:text needs a numeric"),
        ([f"input.path={source}", "dedup.exact=file"], "dedup.exact: file hashes the images"),
        ([f"input.path={source}", "index.kind=hnsw"], "index.kind: dedup range-searches"),
        ([], "input.path: is required"),
        ([f"input.path={tmp_path / 'nowhere'}"], "input.path: .* does not exist"),
        ([f"input.path={tmp_path / 'texts'}"], "input.embedding_column: no column 'embedding'"),
        ([f"input.path={tmp_path / 'unfinished'}"], "input.path: .* has no _SUCCESS"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError, match=message):
            rayjobs.run(rayjobs.compose("dedup", [*args, f"output.path={tmp_path / 'out'}"]))
    assert not (tmp_path / "out").exists()

    done = subprocess.run(
        [sys.executable, "-m", "rayjobs.dedup", f"input.path={source}", "output.path=out", "dedup.keep=x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rules = "first, longest_text, highest:<column>"
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"rayjobs dedup: config error: dedup.keep: must be one of {rules}, got 'x'"
    ]


def test_the_kept_set_feeds_a_text_job_directly(local_ray, embeddings, tmp_path, tiny_gpt2):
    """dedup's data/ is a Parquet table with every input column: generate_text reads its `text`."""
    source, _, _ = embeddings
    dedup(source, tmp_path / "kept")
    kept = set(pq.read_table(tmp_path / "kept" / "data", columns=["id"])["id"].to_pylist())
    cfg = rayjobs.compose(
        "generate_text",
        [
            f"input.path={tmp_path / 'kept' / 'data'}",
            "input.format=parquet",
            "input.id_column=id",
            "prompt.column=text",
            "prompt.truncate=true",  # some synthetic texts are longer than the toy's context
            f"output.path={tmp_path / 'generated'}",
            f"model.path={tiny_gpt2}",
            "model.max_new_tokens=3",
            "job.limit=12",
            "runtime.progress_bars=false",
        ],
    )
    result = rayjobs.run(cfg)
    ids = pq.read_table(tmp_path / "generated" / "data", columns=["id"])["id"].to_pylist()
    assert result.rows_written == len(ids) == 12 and set(ids) <= kept


def test_an_embedding_output_on_s3_deduplicates_to_s3(local_ray, s3, embeddings, tmp_path):
    from tests.integration.conftest import storage_overrides

    fs, options = s3
    source, rows, group = embeddings
    fs.put(str(source), "rayjobs-test/emb", recursive=True)
    local = dedup(source, tmp_path / "local")
    remote = dedup(
        "s3://rayjobs-test/emb", "s3://rayjobs-test/kept", "input.shard_rows=400", *storage_overrides(options)
    )
    assert (remote.rows_written, remote.rows_filtered) == (local.rows_written, local.rows_filtered)
    kept = pq.read_table("rayjobs-test/kept/data", filesystem=fs, columns=["id"])["id"].to_pylist()
    assert sorted(kept) == sorted(
        pq.read_table(tmp_path / "local" / "data", columns=["id"])["id"].to_pylist()
    )
    assert fs.exists("rayjobs-test/kept/_SUCCESS") and not fs.exists("rayjobs-test/kept/_index")
