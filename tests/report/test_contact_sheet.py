"""report.html: every outcome's rows, small columns only, sampled when large, and the page in a
real headless Chromium (sorting, paging, outcome filter, images loaded, hostile text shown as text)."""

import json
import re
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from rayjobs.report.contact_sheet import ContactSheet, write_report
from tests.browser import ARTIFACTS, launch

HOSTILE = "</script><script>window.pwned = 1</script> a <b>bold</b> prompt"


def report_rows(path: Path) -> list[dict]:
    """The rows a report.html holds, as dicts."""
    found = re.search(r'<script type="application/json" id="rows">(.*?)</script>', path.read_text(), re.S)
    payload = json.loads(found[1])
    return [dict(zip(payload["columns"], row, strict=True)) for row in payload["data"]]


def write_output(root: Path, kept: int, filtered: int, errored: int, files: int = 1) -> None:
    """An output folder as a scoring job leaves it: thumbnails, data/, filtered/, errors/."""
    rng = np.random.default_rng(0)
    (root / "thumbnail_32").mkdir(parents=True)
    rows = []
    for i in range(kept + filtered):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        Image.new("RGB", (32, 24), colour).save(root / "thumbnail_32" / f"img{i:03d}.jpg")
        rows.append(
            {
                "id": f"img{i:03d}",
                "prompt": HOSTILE if i == 0 else f"prompt {i} " + "long " * (100 if i == 1 else 1),
                "seed": 1000 + i,
                "clip_score": float(i % 37) + 0.123456,
                "embedding": [0.5] * 8,  # a vector column: never in the report
                "thumbnail_32": f"thumbnail_32/img{i:03d}.jpg",
            }
        )
    for folder, part in (("data", rows[:kept]), ("filtered", rows[kept:])):
        if folder == "filtered":
            part = [
                {**r, "stage": "filter", "reason": f"clip_score {r['clip_score']:.4g} < 40"} for r in part
            ]
        (root / folder).mkdir()
        for k, chunk in enumerate(np.array_split(np.arange(len(part)), files)):
            if len(chunk):
                pq.write_table(
                    pa.Table.from_pylist([part[j] for j in chunk]), root / folder / f"part-{k:06d}.parquet"
                )
    if errored:
        (root / "errors").mkdir()
        errors = [
            {"id": f"bad{i}", "stage": "decode", "reason": "cannot identify image file"}
            for i in range(errored)
        ]
        pq.write_table(pa.Table.from_pylist(errors), root / "errors" / "part-000000.parquet")


def sheet(**options) -> ContactSheet:
    return ContactSheet(image=["thumbnail_32", "path"], text=["prompt"], **options)


def test_every_outcome_with_its_small_columns(tmp_path):
    write_output(tmp_path, kept=5, filtered=3, errored=2)
    shown = write_report(fsspec.filesystem("file"), str(tmp_path), sheet(), "score_images: out")
    assert (shown["rows"], shown["shown"]) == (10, 10)
    rows = {r["id"]: r for r in report_rows(tmp_path / "report.html")}
    assert sorted((k, r["outcome"]) for k, r in rows.items()) == sorted(
        [*((f"img{i:03d}", "kept") for i in range(5)), *((f"img{i:03d}", "filtered") for i in range(5, 8))]
        + [("bad0", "errored"), ("bad1", "errored")]
    )
    assert "embedding" not in shown["columns"]
    assert rows["img006"]["reason"] == "clip_score 6.123 < 40" and rows["img006"]["seed"] == 1006
    assert rows["img003"]["clip_score"] == 3.1235  # five significant digits
    assert len(rows["img001"]["prompt"]) == 300 and rows["img001"]["prompt"].endswith("…")
    assert rows["img000"]["prompt"] == HOSTILE and rows["bad1"]["reason"] == "cannot identify image file"


def test_a_large_output_is_sampled_by_whole_files(tmp_path):
    write_output(tmp_path, kept=400, filtered=100, errored=0, files=50)
    shown = write_report(fsspec.filesystem("file"), str(tmp_path), sheet(max_rows=100), "big")
    assert shown["rows"] == 500 and 80 <= shown["shown"] <= 120
    outcomes = [r["outcome"] for r in report_rows(tmp_path / "report.html")]
    assert outcomes.count("filtered") >= 10  # every outcome folder is sampled, not only the first


@pytest.mark.timeout(120)
def test_the_page_in_headless_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    write_output(tmp_path, kept=120, filtered=30, errored=3)
    write_report(fsspec.filesystem("file"), str(tmp_path), sheet(), "generate_images: campaign")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto((tmp_path / "report.html").as_uri(), timeout=60_000)
            page.wait_for_selector(".card", timeout=30_000)
            assert page.locator(".card").count() == 60
            assert "153 rows: 120 kept, 30 filtered, 3 errored" in page.inner_text("#summary")
            assert page.inner_text("#page") == "page 1 of 3 (153 rows)"
            # sorted by clip_score, highest first; rows without one (errors) last
            first = page.locator(".card .scores").first.inner_text()
            assert first == "seed 1036 · clip_score 36.123"
            page.wait_for_function(
                "[...document.querySelectorAll('.card img')].slice(0, 8)"
                ".every(i => i.complete && i.naturalWidth === 32)",
                timeout=30_000,
            )
            page.screenshot(path=str(ARTIFACTS / "report_page.png"), full_page=False)
            page.select_option("#order", "asc")
            assert "clip_score 0.12346" in page.locator(".card .scores").first.inner_text()
            page.select_option("#outcome", "filtered")
            assert page.locator(".card.filtered").count() == 30 and page.locator(".card.kept").count() == 0
            assert "filtered: clip_score" in page.locator(".card .reason").first.inner_text()
            page.select_option("#outcome", "")
            page.click("#next")
            page.click("#next")
            assert page.inner_text("#page") == "page 3 of 3 (153 rows)"
            assert page.locator(".card").count() == 33
            page.select_option("#outcome", "errored")
            assert page.locator(".card.errored .noimage").count() == 3
            page.select_option("#outcome", "")
            assert page.evaluate("window.pwned === undefined")
            hostile = page.locator(".card .text", has_text="window.pwned")
            assert hostile.count() == 1 and hostile.inner_text() == HOSTILE
        finally:
            browser.close()
    assert (ARTIFACTS / "report_page.png").stat().st_size > 5000


def test_an_edit_report_shows_each_photo_before_and_after_in_chromium(tmp_path):
    from playwright.sync_api import sync_playwright

    (tmp_path / "before_16").mkdir()
    (tmp_path / "files").mkdir()
    rows = []
    for i in range(3):
        Image.new("RGB", (16, 12), (200, 30 * i, 0)).save(tmp_path / "before_16" / f"p{i}.jpg")
        Image.new("RGB", (40, 40), (255, 255, 255)).save(tmp_path / "files" / f"p{i}.png")
        rows.append(
            {
                "id": f"p{i}",
                "path": f"files/p{i}.png",
                "before_16": f"before_16/p{i}.jpg",
                "title": f"boot {i}",
            }
        )
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part-000000.parquet")
    sheet = ContactSheet(image=["path"], before=["before_16"], text=["title"])
    write_report(fsspec.filesystem("file"), str(tmp_path), sheet, "edit_images: out")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto((tmp_path / "report.html").as_uri(), timeout=60_000)
            page.wait_for_selector(".card .pair", timeout=30_000)
            assert page.locator(".card .pair").count() == 3
            images = "[...document.querySelectorAll('.card .pair img')]"
            page.wait_for_function(f"{images}.every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            widths = page.evaluate(f"{images}.map(i => i.naturalWidth)")
            assert sorted(widths) == [16, 16, 16, 40, 40, 40]  # each card: the 16 px before, the 40 px after
            first = page.locator(".card .pair").first.locator("img")
            alts = [first.nth(k).get_attribute("alt") for k in (0, 1)]
            assert (
                alts == ["p0 before", "p0 after"] or alts[0].endswith("before") and alts[1].endswith("after")
            )
            assert "boot" in page.locator(".card .text").first.inner_text()
        finally:
            browser.close()
