"""Images -> embed_images (tiny CLIP) -> build_index -> search: CLI, notebook, HTTP on Ray Serve
(127.0.0.1), long queries cut to the model's limit, a bounded fuzz of the service, and the search
page in a real headless Chromium."""

import collections
import http.client
import io
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

import rayjobs
from tests.browser import ARTIFACTS, launch
from tests.integration.inputs import write_images
from tests.integration.ports import free_port
from tests.tiny_models import WORDS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
POSITIONS = 77  # the text tower's positions, as in openai/clip-vit-base-patch32
LONG_WORDS = " ".join(["a", "red", "square", "on", "white"] * 20)  # 100 words, 242 tokens
EMOJI = "\U0001f600" * 50  # 4 bytes each in byte-level BPE: 202 tokens


def clip_77_positions(folder: Path) -> Path:
    """A tiny CLIP shaped like the real one where long queries fail: byte-level BPE with start and end
    tokens, 77 text positions, and a tokenizer that records no length limit (so 512 is assumed)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    start, end = "<|startoftext|>", "<|endoftext|>"
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        min_frequency=1,
        special_tokens=[start, end],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator([" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 4, trainer)
    ids = {token: backend.token_to_id(token) for token in (start, end)}
    backend.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}", special_tokens=list(ids.items())
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=start, eos_token=end, pad_token=end
    )
    text = {"vocab_size": len(tokenizer), "max_position_embeddings": POSITIONS, "bos_token_id": ids[start]}
    text.update(eos_token_id=ids[end], pad_token_id=ids[end])
    tiny = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = CLIPConfig(
        text_config={**tiny, **text},
        vision_config={**tiny, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        folder
    )
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory) -> str:
    return str(clip_77_positions(tmp_path_factory.mktemp("clip77")))


@pytest.fixture(scope="module")
def image_index(local_ray, tmp_path_factory, clip_model):
    root = tmp_path_factory.mktemp("search")
    made = write_images(root / "images", count=12)
    common = ["runtime.progress_bars=false", "job.max_error_fraction=0.5"]
    embed = [f"input.path={root / 'images'}", f"output.path={root / 'emb'}", f"model.path={clip_model}"]
    rayjobs.run(rayjobs.compose("embed_images", [*embed, *common]))
    rayjobs.run(rayjobs.compose("build_index", [f"input.path={root / 'emb'}", "runtime.progress_bars=false"]))
    return root, made


def direct_text_ranking(model_path: str, root: Path, text: str) -> list[str]:
    """Ids ranked by cosine between CLIP's own text features (the text cut by its own tokenizer to
    the model's positions) and the stored image embeddings."""
    import torch
    from transformers import AutoTokenizer, CLIPModel

    model, tokenizer = CLIPModel.from_pretrained(model_path).eval(), AutoTokenizer.from_pretrained(model_path)
    with torch.inference_mode():
        ids = tokenizer([text], truncation=True, max_length=POSITIONS, return_tensors="pt")
        out = model.get_text_features(**ids)
    query = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].numpy()
    data = pq.read_table(root / "emb" / "data")
    vectors = np.stack(data["embedding"].to_numpy(zero_copy_only=False))
    scores = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    return [data["id"][int(i)].as_py() for i in np.argsort(-scores)]


def test_cli_and_notebook_search_by_text_and_image(image_index, clip_model):
    root, made = image_index
    index = str(root / "emb" / "index")
    expected = direct_text_ranking(clip_model, root, "a red square")[:3]
    notebook = rayjobs.search(index, "a red square", k=3)
    assert notebook["id"].tolist() == expected and notebook["rank"].tolist() == [1, 2, 3]
    assert notebook.attrs["truncated"] is False

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


def search_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": "", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "rayjobs.search", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.parametrize("query", [LONG_WORDS, EMOJI], ids=["100 words", "50 emoji"])
def test_long_query_is_cut_to_the_model_limit_in_notebook_and_cli(image_index, clip_model, query):
    root, _ = image_index
    index = str(root / "emb" / "index")
    notebook = rayjobs.search(index, query, k=3)
    # Cut as CLIP's own tokenizer cuts it (start and end tokens kept), then ranked like CLIP ranks it.
    assert notebook["id"].tolist() == direct_text_ranking(clip_model, root, query)[:3]
    assert notebook.attrs["truncated"] is True and notebook.attrs["token_limit"] == POSITIONS
    assert notebook.attrs["query_tokens"] > POSITIONS

    done = search_cli(f"index.path={index}", f"query={query}", "k=3")  # as typed: no Hydra quoting
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines[1:]] == notebook["id"].tolist()
    assert f"reads the first {POSITIONS} (truncated=true)" in done.stderr, done.stderr[-2000:]


def test_cli_help_and_cfg_go_through_the_shared_runner(image_index):
    root, _ = image_index
    done = search_cli("--cfg", f"index.path={root}", "query=été, à 10€", "k=4")
    assert done.returncode == 0 and "query: été, à 10€" in done.stdout and "k: 4" in done.stdout, done.stderr
    done = search_cli("query=x")
    assert done.returncode == 2 and done.stderr.strip() == (
        "rayjobs search: config error: index.path: is required, e.g. index.path=..."
    )


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


def test_http_long_queries_are_cut_and_flagged(service):
    url, root = service
    index = str(root / "emb" / "index")
    for query in (LONG_WORDS, EMOJI):
        status, _, body = call(url + "api/search?" + urllib.parse.urlencode({"q": query, "k": 3}))
        assert status == 200, body
        answer = json.loads(body)
        assert answer["truncated"] is True and answer["token_limit"] == POSITIONS, answer
        assert [r["id"] for r in answer["results"]] == rayjobs.search(index, query, k=3)["id"].tolist()
    status, _, body = call(url + "api/search?q=red&k=2")
    assert status == 200 and json.loads(body)["truncated"] is False


FUZZ_SEED, FUZZ_REQUESTS, FUZZ_SECONDS = 20261201, 400, 300
METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS")
ROUTES = ("", "api/info", "api/search", "api/search/image", "api/items/0/thumbnail")
SEGMENTS = [
    *("api", "search", "image", "items", "thumbnail", "info", "..", ".", "", "%2e%2e", "..%2f", "%2e%2e%2f"),
    *("..%5c", "%252e%252e", "%c0%ae%c0%ae", "%ff", "%00", "%", "%zz", "etc", "passwd", "win.ini", ".git"),
    *("config", ".env", "admin", "docs", "openapi.json", "-", "~", "ünï", "\u202e", "\U0001f600", "a" * 300),
]
K_VALUES = [
    *("", "0", "1", "3", "100", "101", "-1", "+3", " 5", "5 ", "003", "1e3", "3.0", "0x10", "NaN", "null"),
    *("\u00b2", "\u0663", "\uff11", "9" * 30, "9" * 5000, "true", "[]", "k"),
]
FILTERS = [
    "id:img001.jpg",
    "id:",
    "id:%00",
    "nosuch:x",
    ":x",
    "x",
    "",
    ":",
    "\U0001f600:\U0001f600",
    "id:" + "z" * 500,
]
UPLOAD_TYPES = [
    *("image/jpeg", "image/png", "image/", "IMAGE/JPEG", "image/jpeg; charset=binary"),
    *("application/octet-stream", "text/plain", "application/json", "multipart/form-data; boundary=x", ""),
]


def fuzz_text(rng: random.Random) -> str:
    """A query: words, emoji, random code points (no surrogates), NULs, huge, empty or blank."""
    kind = rng.randrange(8)
    if kind == 0:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(0, 400)))
    if kind == 1:
        return "\U0001f600\U0001f680\u2764\ufe0f" * rng.randrange(1, 300)
    if kind == 2:
        points = [rng.choice([rng.randrange(32, 0xD800), rng.randrange(0xE000, 0x110000)]) for _ in range(60)]
        return "".join(map(chr, points))
    if kind == 3:
        return "\x00" * rng.randrange(1, 50) + "red"
    if kind == 4:
        return "x" * rng.choice([999, 1000, 1001, 5000])
    return rng.choice(["", " ", "\t\n", "\u3000", "red", "%", "&&", "a=b", "${oc.env:HOME}", "' OR 1=1 --"])


def fuzz_body(rng: random.Random, jpeg: bytes) -> bytes:
    """An upload: a real JPEG, cut or corrupted ones, random bytes, headers of other formats, too big."""
    kind = rng.randrange(8)
    if kind == 0:
        return jpeg
    if kind == 1:
        return jpeg[: rng.randrange(1, len(jpeg))]
    if kind == 2:
        data = bytearray(jpeg)
        for _ in range(20):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 3:
        return rng.randbytes(rng.randrange(0, 5000))
    if kind == 4:  # a PNG header claiming 100,000 x 100,000 pixels
        return (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
            + (100_000).to_bytes(4, "big") * 2
            + b"\x08\x02\x00\x00\x00"
        )
    if kind == 5:
        return rng.choice([b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP", b"%PDF-1.4", b"<svg/>", b""])
    if kind == 6:
        return b"\xff\xd8" * (2**19 + rng.randrange(1000))  # just over the 1 MB limit
    return rng.randbytes(64)


def quote(raw: str) -> str:
    # "%" stays raw so that probes like %2e%2e and broken escapes like %zz reach the server as written.
    return urllib.parse.quote(raw, safe="/%")


def fuzz_request(rng: random.Random, jpeg: bytes) -> tuple[str, str, bytes | None, dict[str, str]]:
    """(method, path with query string, body, headers) as a scanner might send them."""
    method = "GET" if rng.random() < 0.6 else rng.choice(METHODS)  # mostly GET: most probes reach a route
    body, headers = None, {}
    kind = rng.randrange(5)
    if kind == 0:  # anywhere, traversal probes included
        path = "/" + "/".join(quote(rng.choice(SEGMENTS)) for _ in range(rng.randrange(1, 7)))
        if rng.random() < 0.3:
            path += "?" + urllib.parse.urlencode({rng.choice(["q", "k", "file", "path"]): fuzz_text(rng)})
    elif kind == 1:  # text search with odd parameters
        params = [("q", fuzz_text(rng))] if rng.random() < 0.9 else []
        params += [("k", rng.choice(K_VALUES)) for _ in range(rng.choice([0, 1, 1, 2]))]
        params += [("filter", rng.choice(FILTERS)) for _ in range(rng.choice([0, 0, 1, 3]))]
        rng.shuffle(params)
        path = "/api/search?" + urllib.parse.urlencode(params)
        if rng.random() < 0.2:  # raw bytes that are not UTF-8 in the query string
            path += "&q=" + "".join(f"%{rng.randrange(128, 256):02X}" for _ in range(rng.randrange(1, 20)))
    elif kind == 2:  # image search with random bodies and content types
        method = "POST" if rng.random() < 0.8 else method
        path = "/api/search/image"
        if rng.random() < 0.7:
            path += "?" + urllib.parse.urlencode({"k": rng.choice(K_VALUES)})
        body = fuzz_body(rng, jpeg)
        kind_header = rng.choice(UPLOAD_TYPES)
        headers = {"Content-Type": kind_header} if kind_header else {}
    elif kind == 3:  # thumbnails of random positions
        position = rng.choice(
            [str(rng.randrange(0, 12)), "12", "99999", "-1", "01", "1.0", "\u00b2", "\u0663", "9" * 5000]
            + ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "0/../../etc/passwd", "0%00", "", "\U0001f600", " 1"]
        )
        path = f"/api/items/{quote(position)}/thumbnail"
    else:  # the known routes with any method and a random body
        path = "/" + rng.choice(ROUTES)
        if rng.random() < 0.5:
            body = rng.randbytes(rng.randrange(0, 300))
            headers = {"Content-Type": rng.choice(UPLOAD_TYPES) or "application/x-www-form-urlencoded"}
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and rng.random() < 0.7:
        body, headers = None, {}
    return method, path, body, headers


def test_fuzz_the_service_never_answers_5xx(service):
    """400 seeded random requests to 127.0.0.1: every one answered, in time, with no 5xx."""
    url, root = service
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    assert host == "127.0.0.1"
    rng = random.Random(FUZZ_SEED)
    jpeg = (root / "images" / "img003.jpg").read_bytes()
    statuses: collections.Counter = collections.Counter()
    failures = []
    deadline = time.monotonic() + FUZZ_SECONDS
    for number in range(FUZZ_REQUESTS):
        assert time.monotonic() < deadline, f"fuzz ran past {FUZZ_SECONDS} s after {number} requests"
        method, path, body, headers = fuzz_request(rng, jpeg)
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
            if response.status >= 500:
                failures.append((number, method, path[:200], response.status))
        except (OSError, http.client.HTTPException) as error:  # includes a timeout: no answer in 30 s
            statuses[type(error).__name__] += 1
            failures.append((number, method, path[:200], repr(error)))
        finally:
            connection.close()
    histogram = dict(sorted(statuses.items(), key=lambda item: str(item[0])))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "search_fuzz.json").write_text(json.dumps({"seed": FUZZ_SEED, "statuses": histogram}))
    print("fuzz status histogram:", histogram)
    assert not failures, failures[:20]
    status, _, body = call(url + "api/search?q=red&k=2")  # still serving
    assert status == 200 and len(json.loads(body)["results"]) == 2


def test_search_page_in_headless_chromium(service):
    from playwright.sync_api import sync_playwright

    url, _ = service
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
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
