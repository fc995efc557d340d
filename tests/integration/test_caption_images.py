"""caption_images end to end on a real local Ray: captions match a direct generate() per image."""

import pyarrow.parquet as pq
import pytest

import rayjobs
from tests.integration.inputs import write_images
from tests.operators.image.test_image_captioner import direct_captions

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


def test_prompt_template_over_columns_of_a_parquet_table(local_ray, tmp_path, tiny_blip):
    """Each image is captioned with its own prompt; a row whose template fills to blank is an error."""
    import pyarrow as pa

    from tests.operators.image.test_image_captioner import pngs

    images = pngs(3)
    (tmp_path / "in").mkdir()
    pq.write_table(
        pa.table({"key": ["a", "b", "c"], "image": images, "title": ["a red", "a blue", None]}),
        tmp_path / "in" / "photos.parquet",
    )
    cfg = rayjobs.compose(
        "caption_images",
        [
            f"input.path={tmp_path / 'in'}",
            "input.format=parquet",
            "input.image_column=image",
            "input.id_column=key",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_blip}",
            "model.max_new_tokens=5",
            "prompt.template='{title}'",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.5",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (2, 1)
    data = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    assert data["a"]["prompt"] == "a red" and data["b"]["prompt"] == "a blue"
    assert data["a"]["caption"] == direct_captions(tiny_blip, [images[0]], "a red", 5)[0]
    assert data["b"]["caption"] == direct_captions(tiny_blip, [images[1]], "a blue", 5)[0]
    errors = pq.read_table(tmp_path / "out" / "errors").to_pylist()
    assert [(e["id"], e["stage"], e["reason"]) for e in errors] == [("c", "prompt", "empty prompt")]


def test_a_chat_vlm_captions_a_folder_with_per_row_prompts(local_ray, tmp_path, tiny_smolvlm):
    """SmolVLM's architecture through its own processor and chat template: whole images of mixed
    sizes cross the object store, captions equal a direct generate() per image, bad files are errors."""
    import io

    from PIL import Image

    from tests.operators.image.test_chat_captioner import direct_caption

    made = write_images(tmp_path / "images", count=6)
    cfg = rayjobs.compose(
        "caption_images",
        [
            "model=smolvlm_256m",
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_smolvlm}",
            "model.max_new_tokens=6",
            "model.batch_size=2",
            "prompt.template='what is in {id}?'",
            "preprocess.max_side=48",
            "input.shard_rows=3",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.4",
        ],
    )
    result = rayjobs.run(cfg)
    good = sorted(name for name, blob in made.items() if blob is not None)
    assert (result.rows_written, result.rows_errored, result.ok) == (len(good), 2, True)
    rows = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "data").to_pylist()}
    assert sorted(rows) == good
    for name in good:
        image = Image.open(io.BytesIO(made[name])).convert("RGB")
        image.thumbnail((48, 48), Image.Resampling.BICUBIC)  # preprocess.max_side, as the job shrinks
        assert rows[name]["prompt"] == f"what is in {name}?"
        assert rows[name]["caption"] == direct_caption(tiny_smolvlm, image, f"what is in {name}?", 6)
        assert 0 < rows[name]["generated_tokens"] <= 6
    errors = pq.read_table(tmp_path / "out" / "errors")["id"].to_pylist()
    assert sorted(errors) == ["broken.jpg", "sub/empty.png"]


def test_seo_metadata_under_a_json_schema_lands_as_columns_and_csv(local_ray, tmp_path, tiny_smolvlm):
    """A chat VLM bound to a JSON schema: every good image gets title, alt_text, tags and category
    columns that validate, a cut-short completion is an error row, and data.csv holds the rows."""
    import csv
    import json

    import jsonschema

    from tests.operators.image.test_chat_captioner import SEO_SCHEMA

    made = write_images(tmp_path / "images", count=6)
    (tmp_path / "seo.json").write_text(json.dumps(SEO_SCHEMA))
    common = [
        "model=smolvlm_256m",
        f"input.path={tmp_path / 'images'}",
        f"model.path={tiny_smolvlm}",
        "model.batch_size=2",
        f"prompt.json_schema={tmp_path / 'seo.json'}",
        "prompt.template='Write SEO metadata for {id}.'",
        "preprocess.max_side=48",
        "runtime.progress_bars=false",
        "job.max_error_fraction=1.0",
    ]
    cfg = rayjobs.compose(
        "caption_images",
        [*common, f"output.path={tmp_path / 'out'}", "model.max_new_tokens=240", "output.csv=true"],
    )
    result = rayjobs.run(cfg)
    good = sorted(name for name, blob in made.items() if blob is not None)
    assert (result.rows_written, result.rows_errored) == (len(good), 2)
    data = pq.read_table(tmp_path / "out" / "data")
    assert data.column_names[-4:] == ["title", "alt_text", "tags", "category"]
    for row in data.to_pylist():
        metadata = {name: row[name] for name in SEO_SCHEMA["properties"]}
        jsonschema.validate(metadata, SEO_SCHEMA)
        assert json.loads(row["caption"]) == metadata
    with open(tmp_path / "out" / "data.csv", newline="") as file:
        table = list(csv.DictReader(file))
    assert sorted(row["id"] for row in table) == good
    assert all(isinstance(json.loads(row["tags"]), list) for row in table)

    short = rayjobs.compose(
        "caption_images", [*common, f"output.path={tmp_path / 'short'}", "model.max_new_tokens=5"]
    )
    cut = rayjobs.run(short)
    assert (cut.rows_written, cut.rows_errored) == (0, len(made))
    reasons = pq.read_table(tmp_path / "short" / "errors")["reason"].to_pylist()
    assert sum("cut short by max_new_tokens" in reason for reason in reasons) == len(good)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["prompt.choices=[indoor,outdoor]"], "prompt.choices"),  # BLIP: not a chat VLM
        (["model=smolvlm_256m", "prompt.choices=[a,b]", "model.num_beams=2"], "model.num_beams"),
        (
            [
                "model=smolvlm_256m",
                "prompt.json_schema={type: object, properties: {caption: {type: string}}}",
            ],
            "prompt.json_schema",
        ),
    ],
)
def test_structured_captions_refuse_what_cannot_work_before_ray(tmp_path, overrides, key):
    from rayjobs.config.config_error import ConfigError

    cfg = rayjobs.compose(
        "caption_images", [f"input.path={tmp_path}", f"output.path={tmp_path / 'out'}", *overrides]
    )
    with pytest.raises(ConfigError) as raised:
        rayjobs.run(cfg)
    assert raised.value.key == key
