"""expand_prompts: one row per image to make, each with its own seed and parameters."""

import pyarrow as pa

from operators.fan_out import INDEX, PARENT_ID
from operators.image.image_prompts import expand_prompts, image_seed
from operators.row_errors import ERROR, ERROR_STAGE

DEFAULTS = {"num_inference_steps": 30, "guidance_scale": 7.5, "height": 512, "width": 512}


def expand(table: pa.Table, **options) -> pa.Table:
    settings = {
        "column": "prompt",
        "template": None,
        "negative": None,
        "negative_column": None,
        "variations": [],
        "grid": {},
        "defaults": DEFAULTS,
        "n": 1,
        "seed": 7,
        **options,
    }
    return expand_prompts(table, **settings)


def prompts(*texts) -> pa.Table:
    return pa.table({"id": [f"p{i}" for i in range(len(texts))], "prompt": list(texts)})


def test_variations_grid_and_n_cross_into_one_row_per_image():
    out = expand(
        prompts("a red shoe", "  ", None),
        variations=[", watercolor", ", photo"],
        grid={"guidance_scale": [5.0, 9.0]},
        n=2,
        negative="blurry",
    )
    good = out.filter(pa.compute.is_null(out[ERROR]))
    assert good.num_rows == 2 * 2 * 2  # variations x grid points x n
    rows = good.to_pylist()
    assert [r["id"] for r in rows] == [f"p0@{i}" for i in range(8)]
    assert {r[PARENT_ID] for r in rows} == {"p0"} and [r[INDEX] for r in rows] == list(range(8))
    assert [r["prompt"] for r in rows] == ["a red shoe, watercolor"] * 4 + ["a red shoe, photo"] * 4
    assert [r["guidance_scale"] for r in rows] == [5.0, 5.0, 9.0, 9.0] * 2
    assert {(r["num_inference_steps"], r["height"], r["width"], r["negative_prompt"]) for r in rows} == {
        (30, 512, 512, "blurry")
    }
    assert [r["seed"] for r in rows] == [image_seed(7, "p0", i // 2, i % 2) for i in range(8)]
    assert len({r["seed"] for r in rows}) == 8
    assert [r["variation"] for r in rows] == [", watercolor"] * 4 + [", photo"] * 4

    bad = out.filter(pa.compute.is_valid(out[ERROR])).to_pylist()
    assert [(r["id"], r[ERROR], r[ERROR_STAGE]) for r in bad] == [
        ("p1", "empty prompt", "prompt"),
        ("p2", "missing prompt (null)", "prompt"),
    ]
    assert bad[0]["seed"] is None and bad[0][PARENT_ID] is None


def test_seeds_depend_on_the_row_not_on_the_batch():
    table = prompts("a", "b", "c", "d")
    whole = expand(table, n=3)["seed"].to_pylist()
    parts = (
        expand(table.slice(0, 1), n=3)["seed"].to_pylist() + expand(table.slice(1), n=3)["seed"].to_pylist()
    )
    assert whole == parts and all(0 <= s < 2**32 for s in whole)
    assert expand(table, n=3, seed=8)["seed"].to_pylist() != whole  # job seed changes every image


def test_template_and_negative_column_fill_each_row():
    table = pa.table(
        {"id": ["a", "b"], "product": ["mug", "lamp"], "style": ["flat", None], "neg": ["x", None]}
    )
    out = expand(table, column=None, template="{product} on white, {style}", negative_column="neg")
    assert out["prompt"].to_pylist() == ["mug on white, flat", "lamp on white, "]
    assert out["negative_prompt"].to_pylist() == ["x", None]
    assert out["variation"].to_pylist() == [None, None]  # no variations asked
