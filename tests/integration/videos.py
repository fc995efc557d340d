"""Synthetic videos made with PyAV in the tests: solid-colour segments that change at known
seconds (so frame times, scene cuts and search hits can be checked), and the broken kinds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Colours far apart in every channel: a cut between any two is a large frame difference.
COLOURS = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 40), (200, 40, 220), (20, 20, 20)]


def segment_frame(colour: tuple[int, int, int], size: tuple[int, int], marker: int = 0) -> np.ndarray:
    """H x W x 3 uint8: a solid colour with a white bar in the top-left corner (so an upright frame
    can be told from a rotated one) and `marker` grey stripes at the bottom."""
    width, height = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = colour
    frame[: height // 4, : width // 3] = 255
    for i in range(marker):
        frame[-4:, i * 6 : i * 6 + 3] = 128
    return frame


def write_video(
    path: Path,
    segments: Sequence[tuple[float, tuple[int, int, int]]],
    *,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    rotation: int | None = None,
    gop: int | None = None,
    options: dict[str, str] | None = None,
) -> list[float]:
    """A video of `segments` ((seconds, colour) each, in order); returns the cut times (seconds
    where a new segment starts, after 0). `rotation`: a display matrix (degrees, as FFmpeg's
    display rotation: -90 means the frames are shown turned 90 degrees clockwise)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    cuts, frames_done = [], 0
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for number, (seconds, colour) in enumerate(segments):
            if number:
                cuts.append(frames_done / fps)
            count = round(seconds * fps)
            for _ in range(count):
                image = segment_frame(colour, size, number)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            frames_done += count
        for packet in stream.encode():
            container.mux(packet)
    return cuts


def audio_only(path: Path, seconds: float = 1.0) -> None:
    """An .mp4 holding an AAC track and no video."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = int(16000 * seconds)
        wave = (0.2 * np.sin(np.arange(samples) / 8)).astype(np.float32).reshape(1, -1)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(wave[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def noise_video(path: Path, seconds: float, fps: int = 10, **options: str) -> None:
    """Random frames (so the encoder cannot shrink them): a file whose size tracks its length."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(round(seconds * fps)):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def broken_videos(folder: Path, good: Path) -> dict[str, str]:
    """The kinds of bad input, next to `good` (an mp4 to truncate): name -> what is wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])  # its index (moov) is at the end
    (folder / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    audio_only(folder / "audio.mp4")
    # The index first (faststart), then half the frames: the container says 10 s and holds ~5.
    noise_video(folder / "lying.mp4", 10, movflags="faststart")
    whole = (folder / "lying.mp4").read_bytes()
    (folder / "lying.mp4").write_bytes(whole[: len(whole) // 2])
    # A Matroska codec id FFmpeg does not know: a stream it cannot decode.
    write_video(folder / "codec.mkv", [(1, COLOURS[0])])
    mkv = (folder / "codec.mkv").read_bytes()
    (folder / "codec.mkv").write_bytes(mkv.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"))
    return {
        "empty.mp4": "empty",
        "truncated.mp4": "truncated",
        "random.mp4": "random bytes",
        "audio.mp4": "audio only",
        "lying.mp4": "says 10 s, holds about 5",
        "codec.mkv": "unsupported codec",
    }
