"""CPU stage ahead of a text-to-image model: one row per image to make.

Each input row's prompt (a column, or a template over columns) is crossed with every style
variation and every point of the parameter grid, and each combination fans out into `n` images.
Every image row carries what makes it: its prompt, negative prompt, seed, and each generation
parameter in a column named as the diffusers argument. The seed comes from (job seed, row id,
combination, image), so any one image can be made again alone, in any batch, by any run.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from operators.fan_out import fan_out
from operators.row_errors import add_error_columns, good_rows, mark_errors
from operators.text.prompt_template import prompt_text, template_columns

STAGE = "prompt"
# Generation parameters a row may set, with their Arrow types: the diffusers argument names.
PARAMETERS = {
    "num_inference_steps": pa.int32(),
    "guidance_scale": pa.float64(),
    "height": pa.int32(),
    "width": pa.int32(),
}


def image_seed(job_seed: int, row_id: Any, combination: int, image: int) -> int:
    """A 32-bit seed (what image tools show and take) that depends on nothing but its arguments."""
    key = f"{job_seed}\x1f{row_id}\x1f{combination}\x1f{image}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big")


def combinations(variations: Sequence[str], grid: Mapping[str, Sequence[Any]]) -> list[tuple[str, dict]]:
    """(style suffix, parameters) for every variation x grid point, in a fixed order."""
    names = list(grid)
    points = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*(grid[n] for n in names))
    ]
    return [(suffix, point) for suffix in (list(variations) or [""]) for point in points]


def expand_prompts(
    table: pa.Table,
    *,
    column: str | None,
    template: str | None,
    negative: str | None,
    negative_column: str | None,
    variations: Sequence[str],
    grid: Mapping[str, Sequence[Any]],
    defaults: Mapping[str, Any],
    n: int,
    seed: int,
) -> pa.Table:
    """Adds prompt, negative_prompt, seed, variation and PARAMETERS columns, one row per image;
    rows without a prompt become errors and stay one row."""
    table = add_error_columns(table)
    names = template_columns(template) if template else [column]
    records = table.select(names).to_pylist()
    made = [prompt_text(record, column, template) for record in records]
    table = mark_errors(table, [reason for _, reason in made], STAGE)
    good = good_rows(table)
    combos = combinations(variations, grid)
    per_row = len(combos) * n
    negatives = table[negative_column].to_pylist() if negative_column else [negative] * table.num_rows
    ids = table["id"].to_pylist()
    out = fan_out(table, [per_row] * table.num_rows, only=good)
    columns: dict[str, list] = {
        name: [] for name in ("prompt", "negative_prompt", "seed", "variation", *PARAMETERS)
    }
    for row in range(table.num_rows):
        count = per_row if good[row] else 1
        for child in range(count):
            combo, image = divmod(child, n)
            suffix, point = combos[combo] if good[row] else ("", {})
            values = {**defaults, **point}
            columns["prompt"].append(made[row][0] + suffix if good[row] else None)
            columns["negative_prompt"].append(negatives[row] if good[row] else None)
            columns["seed"].append(image_seed(seed, ids[row], combo, image) if good[row] else None)
            columns["variation"].append(suffix if good[row] and variations else None)
            for name in PARAMETERS:
                columns[name].append(values.get(name) if good[row] else None)
    types = {
        "prompt": pa.string(),
        "negative_prompt": pa.string(),
        "seed": pa.int64(),
        "variation": pa.string(),
    }
    for name, values in columns.items():
        array = pa.array(values, types.get(name) or PARAMETERS[name])
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(name, array)
    return out
