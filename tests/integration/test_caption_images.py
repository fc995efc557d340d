"""caption_images end to end on a real local Ray: captions match a direct generate() per image."""

import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.integration.inputs import write_images
from tests.operators.test_image_captioner import direct_captions

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_caption_a_folder_with_broken_files(local_ray, tmp_path, tiny_blip):
    made = write_images(tmp_path / "images", count=8)
    cfg = rayjobs.compose(
        "caption_images",
        [
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_blip}",
            "model.max_new_tokens=6",
            "model.batch_size=3",
            "input.shard_rows=4",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.3",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored, result.ok) == (8, 2, True)
    data = pq.read_table(tmp_path / "out" / "data")
    assert data.column_names == ["id", "caption", "generated_tokens"]
    good = sorted(name for name, blob in made.items() if blob is not None)
    captions = dict(zip(data["id"].to_pylist(), data["caption"].to_pylist(), strict=True))
    assert [captions[name] for name in good] == direct_captions(tiny_blip, [made[n] for n in good], None, 6)
    errors = pq.read_table(tmp_path / "out" / "errors")["id"].to_pylist()
    assert sorted(errors) == ["broken.jpg", "sub/empty.png"]
