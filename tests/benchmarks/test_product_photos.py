"""Smoke test of the product-photo benchmark on the tiny models: every figure is measured and every
photo comes out, never timings."""

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROWS = 4


def test_product_photo_harness_measures_every_figure(tmp_path, tiny_segformer, tiny_swin2sr, tiny_smolvlm):
    from benchmarks.product_photos import EDITS, measure, table

    paths = {"remove_background": tiny_segformer, "upscale": tiny_swin2sr, "describe": tiny_smolvlm}
    extra = ["describe.batch_size=2"]
    result = measure(tmp_path, ROWS, "cpu", paths, new_tokens=8, photo_scale=0.125, extra=extra)
    figures = result["figures"]
    assert figures["rows_out"] == ROWS
    names = ["decode_ceiling", "encode_ceiling", "e2e", "e2e_with_ray_start"]
    for name in [*names, *(f"{edit}_{figure}" for edit in EDITS for figure in ("ceiling", "stage"))]:
        assert figures[name] > 0, name  # every pool of the chain has its rate in the pipeline
    assert all(value > 0 for value in result["ratios"].values()) and len(result["ratios"]) == 2
    assert result["shared_bound"]["cpu"] > 0 and result["cpu_s_per_1000"] > 0
    assert result["gpu_s_per_1000"] == 0
    assert "rayjobs e2e" in table({**result, "gpu_s_per_1000": 0.0})
