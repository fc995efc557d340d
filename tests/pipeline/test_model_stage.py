from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np
import pyarrow as pa

from operators.arrow_tensors import arrow_to_tensor, lists_to_arrow, tensor_to_arrow
from operators.row_errors import ERROR, ERROR_STAGE
from rayjobs.pipeline.model_stage import ModelStage


class PixelSums:
    """A real (tiny) operator: one number per image; refuses images whose first pixel is 13."""

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def __call__(self, batch):
        pixels = batch["pixel_values"]
        if (pixels.reshape(len(pixels), -1)[:, 0] == 13).any():
            raise ValueError("pixel 13 is unlucky")
        sums = pixels.reshape(len(pixels), -1).sum(axis=1, dtype=np.float32) * self.scale
        return {"embedding": np.stack([sums, -sums], axis=1)}


class TokenCounts:
    inputs: ClassVar[tuple[str, ...]] = ("input_ids",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __call__(self, batch):
        return {"embedding": np.array([[len(row)] for row in batch["input_ids"]], dtype=np.float32)}


class RecordsLengths(TokenCounts):
    """TokenCounts that remembers the row lengths of every call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, batch):
        self.calls.append([len(row) for row in batch["input_ids"]])
        return super().__call__(batch)


class ReadsEitherColumn:
    """Reads `column` instead of its class's input, as ImageEmbedder(decode="device") does."""

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self, column: str) -> None:
        self.inputs = (column,)

    def __call__(self, batch):
        return {"embedding": np.asarray(batch[self.inputs[0]], dtype=np.float32)[:, None]}


def images_table(pixels: np.ndarray, errors=None) -> pa.Table:
    n = len(pixels)
    errors = errors or [None] * n
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "pixel_values": tensor_to_arrow(pixels),
            ERROR: pa.array(errors, pa.string()),
            ERROR_STAGE: pa.array(["decode" if e else None for e in errors], pa.string()),
        }
    )


def stage(target: str = "PixelSums", **kwargs) -> ModelStage:
    return ModelStage(f"tests.pipeline.test_model_stage.{target}", kwargs)


def expected(pixels: np.ndarray, scale: float = 1.0) -> np.ndarray:
    sums = pixels.reshape(len(pixels), -1).sum(axis=1).astype(np.float32) * scale
    return np.stack([sums, -sums], axis=1)


def test_sliced_multi_chunk_batches_keep_rows_aligned():
    """Ray hands actors slices of concatenated blocks; every row must keep its own pixels."""
    pixels = np.random.default_rng(0).integers(0, 12, (8, 3, 4, 4), dtype=np.uint8)
    table = pa.concat_tables([images_table(pixels[:4]), images_table(pixels[4:])])
    table = table.set_column(0, "id", pa.array([f"r{i}" for i in range(8)]))
    out = pa.concat_tables([stage(scale=2.0)(table.slice(0, 5)), stage(scale=2.0)(table.slice(5, 3))])
    assert out["id"].to_pylist() == [f"r{i}" for i in range(8)]
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"]), expected(pixels, 2.0))
    assert "pixel_values" not in out.column_names


def test_two_threads_share_one_stage_as_gpu_actors_do():
    """GPU actors run two calls at once (gpu_calls): each call's rows stay its own."""
    rng = np.random.default_rng(3)
    blocks = [rng.integers(0, 12, (6 + i, 3, 4, 4), dtype=np.uint8) for i in range(16)]
    model = stage(scale=0.5)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda pixels: model(images_table(pixels)), blocks))
    for pixels, out in zip(blocks, outs, strict=True):
        np.testing.assert_array_equal(arrow_to_tensor(out["embedding"]), expected(pixels, 0.5))


def test_an_operator_instance_may_read_other_inputs_than_its_class():
    model = stage("ReadsEitherColumn", column="other")
    assert model.inputs == ("other",)
    table = pa.table({"id": ["a", "b"], "other": [2.0, 3.0]})
    out = model(table)
    assert out.column_names == ["id", ERROR, ERROR_STAGE, "embedding", "_batch_size:model"]
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"]), [[2.0], [3.0]])


def test_rows_already_in_error_are_skipped_and_passed_through():
    pixels = np.ones((3, 3, 2, 2), dtype=np.uint8)
    pixels[1, 0, 0, 0] = 13  # would poison the batch if it reached the operator
    out = stage()(images_table(pixels, [None, "bad jpeg", None]))
    assert out[ERROR].to_pylist() == [None, "bad jpeg", None]
    assert out[ERROR_STAGE].to_pylist() == [None, "decode", None]
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"])[[0, 2]], expected(pixels[[0, 2]]))


def test_a_failing_row_fails_alone():
    pixels = np.ones((4, 3, 2, 2), dtype=np.uint8)
    pixels[2, 0, 0, 0] = 13
    out = stage()(images_table(pixels))
    assert out[ERROR].to_pylist() == [None, None, "ValueError: pixel 13 is unlucky", None]
    assert out[ERROR_STAGE].to_pylist() == [None, None, "model", None]
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"])[[0, 1, 3]], expected(pixels[[0, 1, 3]]))


def test_a_batch_with_no_good_rows_has_no_outputs():
    out = stage()(images_table(np.ones((2, 3, 2, 2), np.uint8), ["a", "b"]))
    assert "embedding" not in out.column_names and out.num_rows == 2


def test_token_lists_reach_the_operator_as_arrays():
    rows = [np.arange(n, dtype=np.int32) for n in (3, 1, 5)]
    table = pa.table({"id": [1, 2, 3], "input_ids": lists_to_arrow(rows)}).slice(1, 2)
    out = stage("TokenCounts")(table)
    assert arrow_to_tensor(out["embedding"]).ravel().tolist() == [1.0, 5.0]


class Shout:
    """Text in, text and a count out: outputs that are not tensors."""

    inputs: ClassVar[tuple[str, ...]] = ("text",)
    outputs: ClassVar[tuple[str, ...]] = ("caption", "length")

    def __call__(self, batch):
        if any(t == "boom" for t in batch["text"]):
            raise RuntimeError("boom")
        texts = [t.upper() for t in batch["text"]]
        return {"caption": np.array(texts, dtype=object), "length": np.array([len(t) for t in texts])}


def test_text_outputs_become_string_columns_with_nulls_for_failed_rows():
    table = pa.table({"id": [1, 2, 3], "text": ["ab", "boom", "cde"]})
    out = stage("Shout")(table)
    assert out["caption"].to_pylist() == ["AB", None, "CDE"]
    assert arrow_to_tensor(out["length"]).tolist()[0] == 2
    assert out[ERROR].to_pylist()[1] == "RuntimeError: boom"


class RunsOutOfMemory:
    """PixelSums that runs out of (accelerator) memory on batches over 20 rows."""

    inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    outputs: ClassVar[tuple[str, ...]] = ("embedding",)

    def __init__(self) -> None:
        self.sums = PixelSums()
        self.sizes: list[int] = []

    def __call__(self, batch):
        self.sizes.append(len(batch["pixel_values"]))
        if len(batch["pixel_values"]) > 20:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return self.sums(batch)


class OutOfMemoryError(RuntimeError):
    pass


def test_out_of_memory_halves_the_batch_and_loses_no_row():
    pixels = np.arange(50 * 12, dtype=np.uint8).reshape(50, 3, 2, 2) % 7
    model = ModelStage("tests.pipeline.test_model_stage.RunsOutOfMemory", {}, batch_size=64)
    out = model(images_table(pixels))
    assert out[ERROR].null_count == 50
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"]), expected(pixels))
    assert model.operator.sizes[:3] == [50, 25, 12] and model.batch_size == 12
    assert set(out["_batch_size:model"].to_pylist()) == {12}


def test_auto_batch_size_probes_once_then_cuts_blocks_into_batches_of_it():
    pixels = np.ones((40, 3, 2, 2), dtype=np.uint8)
    pixels[5, 0, 0, 0] = 13  # one poisoned row: only it fails, in whichever batch it lands
    model = ModelStage("tests.pipeline.test_model_stage.PixelSums", {}, batch_size="auto", max_batch_size=16)
    outs = [model(images_table(pixels))]
    while model.probe is None and len(outs) < 40:  # each size is timed over several batches
        outs.append(model(images_table(pixels)))
    chosen = model.batch_size
    assert chosen in (8, 16) and model.probe is not None and set(model.probe.rows_per_s) <= {8, 16}
    outs.append(model(images_table(pixels)))
    assert model.batch_size == chosen  # probed once per actor
    for out in outs:
        assert out[ERROR].to_pylist()[5] == "ValueError: pixel 13 is unlucky" and out[ERROR].null_count == 39
        good = [i for i in range(40) if i != 5]
        np.testing.assert_array_equal(arrow_to_tensor(out["embedding"])[good], expected(pixels[good]))
    assert set(outs[-1]["_batch_size:model"].to_pylist()) == {chosen}


def test_the_probe_times_the_middle_of_a_sorted_block_and_keeps_rows_in_place():
    lengths = np.repeat(np.arange(1, 101), 4)  # 400 rows, shortest first, as tokenize_texts sorts
    table = pa.table({"input_ids": pa.array([list(range(n)) for n in lengths], pa.list_(pa.int32()))})
    model = ModelStage(
        "tests.pipeline.test_model_stage.RecordsLengths", {}, batch_size="auto", max_batch_size=32
    )
    out = model(table)
    first_timed = model.operator.calls[1]  # the call after the untimed warm-up
    assert 40 <= min(first_timed) and max(first_timed) <= 60  # from the middle, not the short end
    np.testing.assert_array_equal(arrow_to_tensor(out["embedding"])[:, 0], lengths)


def test_auto_batch_size_settles_when_blocks_are_smaller_than_the_next_size_to_try():
    model = ModelStage("tests.pipeline.test_model_stage.PixelSums", {}, batch_size="auto", max_batch_size=64)
    for _ in range(30):  # 20-row blocks: 8s, then 16s (each size timed over several blocks)...
        out = model(images_table(np.ones((20, 3, 2, 2), dtype=np.uint8)))
    assert model.probe is not None and model.batch_size in (8, 16)  # ... and 32 never fits a block
    assert set(out["_batch_size:model"].to_pylist()) == {model.batch_size}


def test_token_budget_cuts_sorted_blocks_by_padded_tokens_and_keeps_rows_in_place():
    lengths = [2] * 10 + [5] * 6 + [12] * 3
    rows = [np.arange(n, dtype=np.int32) for n in lengths]
    table = pa.table({"id": [f"r{i}" for i in range(len(rows))], "input_ids": lists_to_arrow(rows)})
    model = ModelStage("tests.pipeline.test_model_stage.RecordsLengths", {}, batch_size=8, batch_tokens=24)
    out = model(table)
    calls = model.operator.calls
    assert [len(call) for call in calls] == [8, 4, 4, 2, 1]  # 8 rows cap, then 4 x 5, 2 x 12 <= 24
    assert all(len(call) * max(call) <= 24 or len(call) == 1 for call in calls)
    assert sum(calls, []) == lengths  # every row once, in order
    assert arrow_to_tensor(out["embedding"]).ravel().tolist() == [float(n) for n in lengths]


def test_token_budget_is_ignored_for_tensor_inputs():
    pixels = np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2)
    model = ModelStage("tests.pipeline.test_model_stage.PixelSums", {}, batch_size=4, batch_tokens=1)
    out = model(images_table(pixels))
    assert np.array_equal(arrow_to_tensor(out["embedding"]), expected(pixels))
