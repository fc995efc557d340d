"""`make demo`: embed a generated set of 2,000 sentences with the real all-MiniLM-L6-v2, offline.

python -m rayjobs.demo [rows]
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import rayjobs
from rayjobs.pipeline.cli import setup_logging

SUBJECTS = [
    "A small dog",
    "The old fisherman",
    "A red bicycle",
    "Two children",
    "A tired nurse",
    "The new smartphone",
    "A grey cat",
    "The city council",
    "A street musician",
    "The storm",
]
ACTIONS = [
    "waits near",
    "races past",
    "is photographed at",
    "disappears behind",
    "shines over",
    "was repaired beside",
    "sleeps under",
    "argues about",
    "plays music at",
    "floods",
]
PLACES = [
    "the harbour at dawn",
    "a crowded train station",
    "the quiet library",
    "a mountain lake",
    "the night market",
    "an empty parking lot",
    "the school playground",
    "a sunny vineyard",
    "the hospital entrance",
    "a snowy forest road",
]
DEMO_DIR = Path("demo_output")


def demo_texts(rows: int, seed: int = 0) -> list[str]:
    """Deterministic sentences of varied length built from the word lists above."""
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, ACTIONS, PLACES))
    texts = []
    for i in range(rows):
        subject, action, place = combos[i % len(combos)]
        tail = " and ".join(rng.sample(PLACES, rng.randint(0, 2)))
        texts.append(f"{subject} {action} {place}{', near ' + tail if tail else ''}.")
    return texts


def main(rows: int = 2000) -> None:
    setup_logging()
    source = DEMO_DIR / "input" / "texts.parquet"
    source.parent.mkdir(parents=True, exist_ok=True)
    texts = demo_texts(rows)
    pq.write_table(pa.table({"doc_id": list(range(rows)), "text": texts}), source)
    cfg = rayjobs.compose(
        "embed_texts",
        overrides=[
            f"input.path={source}",
            "input.id_column=doc_id",
            f"output.path={DEMO_DIR / 'embeddings'}",
            "output.columns=[text]",
            "model=minilm_offline",
            "job.overwrite=true",
        ],
    )
    result = rayjobs.run(cfg)
    print(result.summary())
    table = pq.read_table(Path(result.output_path) / "data").sort_by("id")
    vectors = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    scores = vectors @ vectors[0]
    print(f"\nnearest neighbours of: {table['text'][0]}")
    for i in np.argsort(-scores)[1:4]:
        print(f"  {scores[i]:.3f}  {table['text'][int(i)]}")
    print(f"\noutput: {Path(result.output_path).resolve()}/data  ({result.rows_written} rows)")
    print(
        f"throughput: {result.rows_per_second:.1f} rows/s end to end (Ray start-up and model load included)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
