"""Both jobs with input and output on S3, served by a real moto server on 127.0.0.1."""

import numpy as np
import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.integration.conftest import storage_overrides
from tests.integration.inputs import BAD_TEXTS, write_images, write_texts
from tests.integration.reference import image_vectors, min_cosine

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_embed_texts_reads_and_writes_s3(local_ray, s3, tmp_path, tiny_bert):
    fs, options = s3
    source = write_texts(tmp_path / "in", rows=50, files=2)
    fs.put(str(tmp_path / "in") + "/", "rayjobs-test/texts/", recursive=True)
    cfg = rayjobs.compose(
        "embed_texts",
        [
            "input.path=s3://rayjobs-test/texts",
            "input.id_column=doc_id",
            "output.path=s3://rayjobs-test/out/texts",
            f"model.path={tiny_bert}",
            "input.shard_rows=10",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.1",
            *storage_overrides(options),
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (47, 3)
    assert fs.exists("rayjobs-test/out/texts/_SUCCESS") and fs.exists("rayjobs-test/out/texts/_run.json")
    data = pq.read_table("rayjobs-test/out/texts/data", filesystem=fs)
    assert sorted(data["id"].to_pylist()) == sorted(i for i in source if i - 1000 not in BAD_TEXTS)
    errors = pq.read_table("rayjobs-test/out/texts/errors", filesystem=fs)
    assert sorted(errors["id"].to_pylist()) == sorted(1000 + i for i in BAD_TEXTS)

    again = rayjobs.run(cfg)
    assert again.already_done


def test_embed_images_reads_and_writes_s3(local_ray, s3, tmp_path, tiny_clip):
    fs, options = s3
    made = write_images(tmp_path / "images", count=10)
    fs.put(str(tmp_path / "images") + "/", "rayjobs-test/images/", recursive=True)
    cfg = rayjobs.compose(
        "embed_images",
        [
            "input.path=s3://rayjobs-test/images",
            "output.path=s3://rayjobs-test/out/images",
            f"model.path={tiny_clip}",
            "input.shard_rows=4",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.2",
            *storage_overrides(options),
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (10, 2)
    data = pq.read_table("rayjobs-test/out/images/data", filesystem=fs)
    good = {name: blob for name, blob in made.items() if blob is not None}
    by_id = dict(zip(data["id"].to_pylist(), data["embedding"].to_numpy(zero_copy_only=False), strict=True))
    assert sorted(by_id) == sorted(good)
    names = sorted(good)
    assert (
        min_cosine(np.stack([by_id[n] for n in names]), image_vectors(tiny_clip, [good[n] for n in names]))
        >= 0.999
    )


def test_build_index_reads_embeddings_and_writes_the_index_on_s3(local_ray, s3, tmp_path):
    from benchmarks.synthetic import clustered, write_embeddings
    from rayjobs.index.search_index import SearchIndex

    fs, options = s3
    vectors = clustered(600, 16, 6, seed=3)
    write_embeddings(tmp_path / "emb", vectors)
    fs.put(str(tmp_path / "emb") + "/", "rayjobs-test/emb/", recursive=True)
    overrides = [
        "input.path=s3://rayjobs-test/emb",
        "index.path=s3://rayjobs-test/emb-index",
        "input.shard_rows=250",
        "runtime.progress_bars=false",
        *(f"+input.storage_options.{k}={v}" for k, v in options.items()),
    ]
    result = rayjobs.run(rayjobs.compose("build_index", overrides))
    assert result.rows == 600 and fs.exists("rayjobs-test/emb-index/_SUCCESS")
    index = SearchIndex("s3://rayjobs-test/emb-index", options)
    assert index.search_vector(vectors[321], k=1)["id"].tolist() == ["item-321"]


def test_listings_see_files_written_after_an_earlier_listing(s3):
    """s3fs caches a folder's listing: resume cleanup and the OpenAI output must not trust it."""
    import s3fs

    from rayjobs.io.storage import list_folder

    writer, options = s3
    reader = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    folder = "rayjobs-test/listed/data"
    writer.pipe(f"{folder}/part-000000-a.parquet", b"1")
    assert [name.rsplit("/", 1)[1] for name in reader.ls(folder)] == ["part-000000-a.parquet"]
    writer.pipe(f"{folder}/part-000001-b.parquet", b"2")  # by another process, say a killed run's writer
    assert len(reader.ls(folder)) == 1  # the cached listing: what the fix is for
    assert [name.rsplit("/", 1)[1] for name in list_folder(reader, folder)] == [
        "part-000000-a.parquet",
        "part-000001-b.parquet",
    ]
