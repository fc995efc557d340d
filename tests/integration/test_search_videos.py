"""Videos -> embed_videos (tiny CLIP) -> build_index -> search by time: an image of a segment finds
its video and second (notebook, CLI, HTTP), collapse=video, frame thumbnails and byte ranges from
Ray Serve on 127.0.0.1, and the search page playing a result in a real headless Chromium."""

import http.client
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import rayjobs
from rayjobs.config.config_error import ConfigError
from rayjobs.index.query_encoder import QueryError
from rayjobs.search import run as run_search
from tests.browser import ARTIFACTS, launch
from tests.integration.ports import free_port
from tests.integration.videos import COLOURS, segment_frame, write_video

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
SIZE = (64, 48)  # width, height as encoded
# name -> (codec, display rotation, segments): no colour twice, so an image names one segment.
VIDEOS = {
    "red_green.mp4": ("libx264", None, [(2, COLOURS[0]), (2, COLOURS[1])]),
    "more/blue_yellow.webm": ("libvpx-vp9", None, [(2, COLOURS[2]), (2, COLOURS[3])]),
    "turned.mp4": ("libx264", -90, [(2, COLOURS[4]), (1, COLOURS[5])]),  # shown turned clockwise
}
ROWS = 11  # one frame a second (video.fps=1): 4 + 4 + 3


def segment_span(video: str, number: int) -> tuple[float, float]:
    """[start, end) seconds of a video's segment."""
    lengths = [seconds for seconds, _ in VIDEOS[video][2]]
    return float(sum(lengths[:number])), float(sum(lengths[: number + 1]))


def upright_segment(video: str, number: int) -> np.ndarray:
    """The segment's frame as a viewer sees it (and as embed_videos embedded it)."""
    _, rotation, segments = VIDEOS[video]
    frame = segment_frame(segments[number][1], SIZE, number)
    return np.ascontiguousarray(np.rot90(frame, -1)) if rotation == -90 else frame


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def video_index(local_ray, tmp_path_factory, tiny_clip) -> Path:
    root = tmp_path_factory.mktemp("search_videos")
    for name, (codec, rotation, segments) in VIDEOS.items():
        write_video(root / "videos" / name, segments, size=SIZE, codec=codec, rotation=rotation)
    common = ["runtime.progress_bars=false"]
    embed = [f"input.path={root / 'videos'}", f"output.path={root / 'emb'}", f"model.path={tiny_clip}"]
    embedded = rayjobs.run(rayjobs.compose("embed_videos", [*embed, *common]))
    assert embedded.ok and embedded.rows_written == ROWS, embedded.summary()  # rows: the videos
    built = rayjobs.run(rayjobs.compose("build_index", [f"input.path={root / 'emb'}", *common]))
    assert built.rows == ROWS
    return root


QUERIES = [("more/blue_yellow.webm", 1), ("red_green.mp4", 0), ("turned.mp4", 0)]


def test_an_image_of_a_segment_finds_its_video_and_time_and_collapse_keeps_each_videos_best(video_index):
    index = str(video_index / "emb" / "index")
    info = json.loads((video_index / "emb" / "index" / "index.json").read_text())
    assert (
        info["source"]["video_root"] == str(video_index / "videos") and info["model"]["job"] == "embed_videos"
    )
    for video, number in QUERIES:
        start, end = segment_span(video, number)
        query = png(upright_segment(video, number))
        found = rayjobs.search(index, image=query, k=3)
        top = found.iloc[0]
        assert top["video"] == video and start <= top["t_start"] < end, found
        assert top["t_end"] == pytest.approx(top["t_start"] + 1.0) and top["score"] > 0.99, found

        one = rayjobs.search(index, image=query, k=5, collapse="video")
        every = rayjobs.search(index, image=query, k=100)
        assert len(every) == ROWS and sorted(one["video"]) == sorted(VIDEOS) and one["video"][0] == video
        # Each video's row is its best-scoring frame, and the videos come best first.
        assert one["position"].tolist() == every.drop_duplicates("video")["position"].tolist()
        assert one["rank"].tolist() == [1, 2, 3] and one["score"].is_monotonic_decreasing

    text = rayjobs.search(index, "a red square", k=3, collapse="video")
    assert len(text) == 3 and text["video"].is_unique
    with pytest.raises(QueryError, match="no metadata column 'nosuch' to collapse on"):
        rayjobs.search(index, "a red square", collapse="nosuch")
    cfg = rayjobs.compose("search", [f"index.path={index}", "query=red", "collapse=nosuch"])
    with pytest.raises(ConfigError, match="collapse: no metadata column 'nosuch' to collapse on") as raised:
        run_search(cfg)
    assert "\n" not in str(raised.value)


def test_cli_answers_video_time_and_score_one_row_per_video(video_index, tmp_path):
    video, number = QUERIES[0]
    (tmp_path / "query.png").write_bytes(png(upright_segment(video, number)))
    env = {**os.environ, "RAY_ADDRESS": "", "HF_HUB_OFFLINE": "1"}
    args = [
        f"index.path={video_index / 'emb' / 'index'}",
        f"image={tmp_path / 'query.png'}",
        "collapse=video",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "rayjobs.search", *args], capture_output=True, text=True, timeout=180, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    header, *rows = [line.split() for line in done.stdout.strip().splitlines()]
    assert {"video", "t_start", "t_end", "score"} <= set(header) and len(rows) == 3, done.stdout
    videos = [row[header.index("video")] for row in rows]
    start, end = segment_span(video, number)
    assert videos[0] == video and sorted(videos) == sorted(VIDEOS)
    assert start <= float(rows[0][header.index("t_start")]) < end


@pytest.fixture(scope="module")
def service(video_index):
    from ray import serve

    from rayjobs.serve_index import start

    port = free_port()
    cfg = rayjobs.compose("serve_index", [f"index.path={video_index / 'emb' / 'index'}", f"http.port={port}"])
    url = start(cfg)
    yield url, video_index
    serve.shutdown()


def call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def search_by_image(url: str, video: str, number: int, collapse: bool = True) -> list[dict]:
    query = png(upright_segment(video, number))
    path = "api/search/image?k=5" + ("&collapse=video" if collapse else "")
    status, _, body = call(url + path, query, {"Content-Type": "image/png"})
    assert status == 200, body
    return json.loads(body)["results"]


def test_http_search_collapse_and_upright_frame_thumbnails(service):
    url, root = service
    status, _, body = call(url + "api/info")
    assert status == 200 and json.loads(body)["videos"] is True and json.loads(body)["images"] is True
    for video, number in QUERIES:
        results = search_by_image(url, video, number)
        notebook = rayjobs.search(str(root / "emb" / "index"), image=png(upright_segment(video, number)), k=5)
        assert results[0]["position"] == notebook["position"][0]
        assert [r["video"] for r in results][0] == video and len({r["video"] for r in results}) == 3
        top = results[0]
        assert top["video_url"] == f"api/items/{top['position']}/video#t={top['t_start']:.3f}"

        status, headers, body = call(url + top["thumbnail"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        thumbnail = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        assert thumbnail.shape[:2][::-1] == (top["width"], top["height"])  # upright: 48 x 64 when turned
        expected = upright_segment(video, number).astype(int)
        assert np.abs(thumbnail.astype(int) - expected).mean() < 8, video  # the frame, the right way up
    status, _, body = call(url + "api/search?q=a%20red%20square&k=5&collapse=video")
    assert status == 200 and sorted(r["video"] for r in json.loads(body)["results"]) == sorted(VIDEOS)
    status, _, body = call(url + "api/search?q=red&collapse=nosuch")
    assert status == 400 and "no metadata column 'nosuch' to collapse on" in json.loads(body)["detail"]


def test_http_videos_are_served_in_byte_ranges_for_indexed_items_only(service):
    url, root = service
    for video, number, kind in [
        ("red_green.mp4", 1, "video/mp4"),
        ("more/blue_yellow.webm", 0, "video/webm"),
    ]:
        item = search_by_image(url, video, number)[0]
        data = (root / "videos" / video).read_bytes()
        size, path = len(data), url + f"api/items/{item['position']}/video"

        status, headers, body = call(path, headers={"Range": "bytes=0-99"})
        assert status == 206 and body == data[:100] and headers["Content-Range"] == f"bytes 0-99/{size}"
        assert headers["Accept-Ranges"] == "bytes" and headers["Content-Type"] == kind
        status, headers, body = call(path, headers={"Range": "bytes=-50"})
        assert (
            status == 206
            and body == data[-50:]
            and headers["Content-Range"] == f"bytes {size - 50}-{size - 1}/{size}"
        )
        status, headers, body = call(path, headers={"Range": "bytes=100-"})
        assert status == 206 and body == data[100:]
        status, headers, _ = call(path, headers={"Range": f"bytes={size}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
        status, headers, body = call(path)
        assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"

    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    probes = [
        "/api/items/99999/video",
        "/api/items/99999/thumbnail",
        "/api/items/..%2F..%2Fetc%2Fpasswd/video",
        "/api/items/%2e%2e/%2e%2e/video",
        "/api/items/../../etc/passwd/video",
        "/api/items/0/../../../etc/passwd",
        "/api/items/-1/video",
        "/api/items/1.0/video",
        "/api/items/%00/thumbnail",
    ]
    for probe in probes:  # raw paths: no client normalises the dots away
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            connection.request("GET", probe)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status in (400, 404) and b"root:" not in body, (probe, response.status, body[:200])


def test_search_page_shows_and_plays_video_results_in_headless_chromium(service, tmp_path):
    from playwright.sync_api import sync_playwright

    url, _ = service
    video, number = QUERIES[0]  # the second segment: played from 0:02 or 0:03
    start, end = segment_span(video, number)
    (tmp_path / "query.png").write_bytes(png(upright_segment(video, number)))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.goto(url, timeout=60_000)
            page.wait_for_selector("#collapse-label:not([hidden])", timeout=30_000)
            page.check("#collapse")
            page.set_input_files("#image", str(tmp_path / "query.png"))
            page.wait_for_selector(".video-result video", timeout=60_000)
            page.wait_for_function(
                "[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth > 0)",
                timeout=60_000,
            )
            assert page.locator(".video-result").count() == 3
            sources = page.eval_on_selector_all(
                ".video-result video", "vs => vs.map(v => v.getAttribute('src'))"
            )
            assert all(re.fullmatch(r"api/items/\d+/video#t=\d+\.\d{3}", s) for s in sources), sources
            assert page.eval_on_selector_all(
                ".video-result video", "vs => vs.every(v => v.preload === 'none')"
            )
            names = page.locator(".video-result .id").all_inner_texts()
            times = page.locator(".video-result .time").all_inner_texts()
            assert names[0] == video and sorted(names) == sorted(VIDEOS), names
            assert all(re.fullmatch(r"\d+:\d\d-\d+:\d\d", t) for t in times), times
            assert times[0] in {f"0:{s:02d}-0:{s + 1:02d}" for s in range(int(start), int(end))}, times
            # Chromium fetches the video in byte ranges and starts it at the fragment's second.
            shown_at = page.locator(".video-result video").first.evaluate(PLAY_FROM_FRAGMENT)
            assert start <= shown_at < end, shown_at
            page.screenshot(path=str(ARTIFACTS / "search_videos_page.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "search_videos_page.png").stat().st_size > 1000


PLAY_FROM_FRAGMENT = """async (video) => {
  video.muted = true;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no data in 30 s")), 30000);
    video.addEventListener("loadeddata", () => { clearTimeout(timer); resolve(); }, {once: true});
    const failed = () => reject(new Error(`media error ${video.error && video.error.code}`));
    video.addEventListener("error", failed);
    video.preload = "auto";
    video.load();
  });
  return video.currentTime;
}"""
