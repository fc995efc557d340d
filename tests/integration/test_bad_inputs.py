"""Bad rows are data: every kind of broken input is recorded in errors/, its neighbours are not."""

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from tests.integration.inputs import jpeg

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, then one tiny IDAT: a bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def png(mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (40, 30), 120).save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_images(folder):
    """Good images mixed with every kind of bad file; name -> expected reason fragment (None = good)."""
    good_jpeg = jpeg(5, (64, 48))
    cases = {
        "ok/a.jpg": (good_jpeg, None),
        "ok/b.png": (png(), None),
        "ok/c_gray.png": (png("L"), None),
        "ok/d_rgba.png": (png("RGBA"), None),
        "bad/zero_bytes.jpg": (b"", "empty file (0 bytes)"),
        "bad/truncated.jpg": (good_jpeg[: len(good_jpeg) // 2], "runcated"),
        "bad/truncated.png": (png()[:60], "runcated"),
        "bad/not_an_image.jpg": (b"hello, I am a text file\n" * 10, "cannot identify image file"),
        "bad/html.png": (b"<html><body>403 Forbidden</body></html>", "cannot identify image file"),
        "bad/bomb.png": (png_header_only(30000, 30000), "max_pixels"),
        "ok/e.jpg": (jpeg(6), None),
    }
    for name, (data, _) in cases.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in cases.items()}


def test_every_kind_of_broken_image_is_recorded_and_the_rest_embedded(local_ray, tmp_path, tiny_clip):
    expected = corrupt_images(tmp_path / "images")
    cfg = rayjobs.compose(
        "embed_images",
        [
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_clip}",
            "input.shard_rows=3",
            "preprocess.batch_size=2",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.6",
            "preprocess.max_pixels=100000000",
        ],
    )
    result = rayjobs.run(cfg)
    bad = {name: reason for name, reason in expected.items() if reason}
    assert (result.rows_written, result.rows_errored, result.ok) == (len(expected) - len(bad), len(bad), True)
    assert sorted(pq.read_table(tmp_path / "out" / "data")["id"].to_pylist()) == sorted(
        set(expected) - set(bad)
    )
    errors = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "errors").to_pylist()}
    assert set(errors) == set(bad)
    for name, fragment in bad.items():
        assert fragment in errors[name]["reason"], (name, errors[name]["reason"])
        assert errors[name]["stage"] == "decode" and "\n" not in errors[name]["reason"]


def test_over_the_error_budget_the_run_is_not_ok_but_keeps_its_rows(local_ray, tmp_path, tiny_clip):
    expected = corrupt_images(tmp_path / "images")
    cfg = rayjobs.compose(
        "embed_images",
        [
            f"input.path={tmp_path / 'images'}",
            f"output.path={tmp_path / 'out'}",
            f"model.path={tiny_clip}",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.1",
        ],
    )
    result = rayjobs.run(cfg)
    assert not result.ok and "FAILED" in result.summary()
    assert result.rows_written + result.rows_errored == len(expected)
    assert pq.read_table(tmp_path / "out" / "data").num_rows == result.rows_written
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_text_errors_truncation_and_a_model_failure_on_one_row(local_ray, tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    poison = AutoTokenizer.from_pretrained(tiny_bert).convert_tokens_to_ids("sky")
    texts = [
        "a red car",
        "",
        None,
        "   \n\t ",
        "the sky is blue",
        "a dog in the park",
        "the cat " * 200,
        "green tree",
        "blue sky at night",
        "a small house",
    ]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"n": range(len(texts)), "text": texts}), tmp_path / "in" / "t.parquet")
    cfg = rayjobs.compose(
        "embed_texts",
        [
            f"input.path={tmp_path / 'in'}",
            "input.id_column=n",
            f"output.path={tmp_path / 'out'}",
            "model._target_=tests.integration.faulty_operators.FailsOnToken",
            f"model.path={tiny_bert}",
            f"+model.poison_id={poison}",
            "model.batch_size=4",
            "runtime.progress_bars=false",
            "job.max_error_fraction=0.6",
        ],
    )
    result = rayjobs.run(cfg)
    assert (result.rows_written, result.rows_errored) == (5, 5)
    errors = {
        row["id"]: (row["stage"], row["reason"])
        for row in pq.read_table(tmp_path / "out" / "errors").to_pylist()
    }
    assert {i: stage for i, (stage, _) in errors.items()} == {
        1: "tokenize",
        2: "tokenize",
        3: "tokenize",
        4: "model",
        8: "model",
    }
    assert errors[4][1].startswith("RuntimeError: CUDA error: device-side assert triggered")
    data = pq.read_table(tmp_path / "out" / "data")
    flags = dict(zip(data["id"].to_pylist(), data["truncated"].to_pylist(), strict=True))
    assert flags == {0: False, 5: False, 6: True, 7: False, 9: False}
    assert np.isfinite(np.stack(data["embedding"].to_numpy(zero_copy_only=False))).all()
