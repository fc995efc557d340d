"""Images -> embed_images (tiny CLIP) -> build_index -> search: CLI, notebook, HTTP on Ray Serve
(127.0.0.1) and the search page in a real headless Chromium."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from tests.integration.inputs import write_images

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
ARTIFACTS = Path(os.environ.get("RAYJOBS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


@pytest.fixture(scope="module")
def image_index(local_ray, tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("search")
    made = write_images(root / "images", count=12)
    common = ["runtime.progress_bars=false", "job.max_error_fraction=0.5"]
    embed = [f"input.path={root / 'images'}", f"output.path={root / 'emb'}", f"model.path={tiny_clip}"]
    rayjobs.run(rayjobs.compose("embed_images", [*embed, *common]))
    rayjobs.run(rayjobs.compose("build_index", [f"input.path={root / 'emb'}", "runtime.progress_bars=false"]))
    return root, made


def direct_text_ranking(model_path: str, root: Path, text: str) -> list[str]:
    """Ids ranked by cosine between CLIP's own text features and the stored image embeddings."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    model, tokenizer = CLIPModel.from_pretrained(model_path).eval(), AutoTokenizer.from_pretrained(model_path)
    with torch.inference_mode():
        out = model.get_text_features(**tokenizer([text], return_tensors="pt"))
    query = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].numpy()
    data = pq.read_table(root / "emb" / "data")
    vectors = np.stack(data["embedding"].to_numpy(zero_copy_only=False))
    scores = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    return [data["id"][int(i)].as_py() for i in np.argsort(-scores)]


def test_cli_and_notebook_search_by_text_and_image(image_index, tiny_clip):
    root, made = image_index
    index = str(root / "emb" / "index")
    expected = direct_text_ranking(tiny_clip, root, "a red square")[:3]
    notebook = rayjobs.search(index, "a red square", k=3)
    assert notebook["id"].tolist() == expected and notebook["rank"].tolist() == [1, 2, 3]

    env = {**os.environ, "RAY_ADDRESS": ""}
    text = subprocess.run(
        [sys.executable, "-m", "rayjobs.search", f"index.path={index}", "query=a red square", "k=3"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert text.returncode == 0, text.stderr[-2000:]
    lines = text.stdout.strip().splitlines()
    assert (
        lines[0].split()[:3] == ["rank", "id", "score"]
        and [line.split()[1] for line in lines[1:]] == expected
    )

    image = subprocess.run(
        [
            sys.executable,
            "-m",
            "rayjobs.search",
            f"index.path={index}",
            f"image={root / 'images' / 'img005.jpg'}",
            "k=2",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert image.returncode == 0, image.stderr[-2000:]
    assert image.stdout.strip().splitlines()[1].split()[:2] == ["1", "img005.jpg"]  # an image finds itself

    empty = subprocess.run(
        [sys.executable, "-m", "rayjobs.search", f"index.path={root / 'nothing'}", "query=x"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert (
        empty.returncode == 2
        and "index.path:" in empty.stderr
        and len(empty.stderr.strip().splitlines()) == 1
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(image_index):
    from ray import serve

    from rayjobs.serve_index import start

    root, made = image_index
    port = free_port()
    overrides = [f"index.path={root / 'emb' / 'index'}", f"http.port={port}", "limits.max_upload_mb=1"]
    cfg = rayjobs.compose("serve_index", overrides)
    url = start(cfg)
    yield url, root
    serve.shutdown()


def call(url: str, data: bytes | None = None, content_type: str | None = None):
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": content_type} if content_type else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("Content-Type"), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read()


def test_http_api_answers_like_the_notebook_and_refuses_bad_requests(service):
    url, root = service
    assert url.startswith("http://127.0.0.1:")
    status, _, body = call(url + "api/search?q=a%20red%20square&k=3")
    assert status == 200, body
    answer = json.loads(body)
    expected = rayjobs.search(str(root / "emb" / "index"), "a red square", k=3)["id"].tolist()
    assert [r["id"] for r in answer["results"]] == expected and answer["k"] == 3

    jpeg = (root / "images" / "img007.jpg").read_bytes()
    status, _, body = call(url + "api/search/image?k=2", jpeg, "image/jpeg")
    assert status == 200 and json.loads(body)["results"][0]["id"] == "img007.jpg"
    thumbnail = json.loads(body)["results"][0]["thumbnail"]
    status, kind, body = call(url + thumbnail)
    assert status == 200 and kind == "image/jpeg" and Image.open(io.BytesIO(body)).size[0] > 0

    refused = {
        "api/search?q=red&k=100000": (400, "k must be an integer from 1 to 100"),
        "api/search?q=%20&k=3": (400, "empty query"),
        "api/search?q=" + "a" * 1001: (400, "the limit is 1000"),
        "api/search?q=red&filter=nosuch:x": (400, "no metadata column 'nosuch'"),
        "api/items/..%2F..%2Fetc%2Fpasswd/thumbnail": (400, "must be a row position"),
        "api/items/99999/thumbnail": (404, "no item 99999"),
    }
    for path, (code, message) in refused.items():
        status, _, body = call(url + path)
        assert status == code and message in json.loads(body)["detail"], (path, status, body)
    status, _, body = call(url + "api/search/image", b"plain text", "text/plain")
    assert status == 415 and "upload an image" in json.loads(body)["detail"]
    status, _, body = call(url + "api/search/image", b"\x00garbage" * 10, "image/jpeg")
    assert status == 400 and "not a readable image" in json.loads(body)["detail"]
    status, _, body = call(url + "api/search/image", b"0" * (2**20 + 1000), "image/jpeg")
    assert status == 413 and "limit" in json.loads(body)["detail"]
    status, _, _ = call(url + "../../etc/passwd")
    assert status == 404
    status, _, body = call(url + "api/search?q=red&k=2")  # still serving
    assert status == 200 and len(json.loads(body)["results"]) == 2


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    return found


def test_search_page_in_headless_chromium(service):
    from playwright.sync_api import sync_playwright

    url, _ = service
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True, args=flags)
        try:
            page = browser.new_page()
            page.goto(url, timeout=60_000)
            page.fill("#query", "a red square")
            page.press("#query", "Enter")
            page.wait_for_selector(".result img", timeout=60_000)
            page.wait_for_function(
                "[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth > 0)",
                timeout=60_000,
            )
            cards = page.locator(".result")
            assert cards.count() == 10
            assert "results in" in page.inner_text("#status")
            page.screenshot(path=str(ARTIFACTS / "search_page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "search_page.png").stat().st_size > 1000
