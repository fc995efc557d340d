"""Frame sampling on real (synthetic) videos, no Ray: a range decoded on its own picks exactly
the frames a whole-video decode picks there, so ranges of one video can run in any task."""

import math

import pytest

from operators.video.decode_video import decode_frames, open_video, probe_video
from operators.video.frame_sampling import sample_fps, sample_scenes
from tests.integration.videos import COLOURS, write_video


def keep(pixels):
    return pixels.shape[:2], pixels.mean()


def fps_samples(path, start, end, fps, limit=10_000):
    with open_video(str(path)) as container:
        return sample_fps(decode_frames(container, start), start, end, fps, limit, keep)


def scene_samples(path, start, end, threshold=0.1):
    with open_video(str(path)) as container:
        return sample_scenes(decode_frames(container, start), start, end, threshold, 10_000, keep, 0.1)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """6 s at 10 fps, keyframes every 7 frames (so range starts fall between and on keyframes)."""
    path = tmp_path_factory.mktemp("videos") / "a.mp4"
    cuts = write_video(path, [(2, COLOURS[0]), (1.5, COLOURS[1]), (2.5, COLOURS[2])], gop=7)
    return path, cuts


@pytest.mark.parametrize("fps", [1, 2.5, 3, 10, 25])
@pytest.mark.parametrize("split", [0.7, 1.0, 2.5])
def test_ranges_pick_exactly_the_frames_of_a_whole_decode(video, fps, split):
    path, _ = video
    whole = [(s.index, s.t_start, s.frame) for s in fps_samples(path, 0, math.inf, fps)]
    pieces, start = [], 0.0
    while start < 6:
        end = start + split if start + split < 6 else math.inf
        pieces += [(s.index, s.t_start, s.frame) for s in fps_samples(path, start, end, fps)]
        start += split
    assert pieces == whole
    # One row per 1/fps (the video's own 10 fps at most), each the first frame at or after its time.
    assert len(whole) == min(math.ceil(6 * fps - 1e-9), 60)
    for index, t_start, frame in whole:
        assert index / fps <= t_start + 1e-6 < index / fps + 0.1 + 1e-6
        assert frame == round(t_start * 10)


def test_fps_rows_have_their_times_and_the_limit_holds(video):
    path, _ = video
    samples = fps_samples(path, 0, math.inf, 2)
    assert [s.t_start for s in samples] == [i / 2 for i in range(12)]
    assert [s.t_end for s in samples] == [i / 2 + 0.5 for i in range(12)]
    assert len(fps_samples(path, 0, math.inf, 2, limit=5)) == 5


def test_scenes_start_at_the_known_cuts_within_one_frame(video):
    path, cuts = video
    samples = scene_samples(path, 0, math.inf)
    assert [s.t_start for s in samples] == pytest.approx([0.0, *cuts], abs=0.1)
    assert [s.t_end for s in samples] == pytest.approx([*cuts, 6.0], abs=0.1)
    for sample in samples:  # the frame shown for a scene lies inside it
        assert sample.t_start <= sample.frame / 10 < sample.t_end
    # A range boundary closes a scene: [0, 3) and [3, end) give the cuts plus one at 3 s.
    split = scene_samples(path, 0, 3.0) + scene_samples(path, 3.0, math.inf)
    assert [s.t_start for s in split] == pytest.approx([0.0, 2.0, 3.0, 3.5], abs=0.1)


def test_a_rotated_video_comes_out_upright(tmp_path):
    path = tmp_path / "rot.mp4"
    write_video(path, [(1, COLOURS[0])], rotation=-90)  # shown turned 90 degrees clockwise
    with open_video(str(path)) as container:
        info = probe_video(container)
        frame = next(decode_frames(container)).pixels()
    assert (info.width, info.height, info.duration) == (64, 48, pytest.approx(1.0))
    assert frame.shape == (64, 48, 3)
    # The white bar drawn at the stored frame's top-left shows at the top-right once turned.
    assert frame[:5, -5:].min() > 200 and frame[-5:, :5].max() < 250


@pytest.mark.parametrize("codec", ["libx264", "libvpx-vp9"])
def test_a_range_starts_decoding_at_the_keyframe_before_it_not_at_zero(tmp_path, codec):
    path = tmp_path / f"g.{'webm' if codec == 'libvpx-vp9' else 'mp4'}"
    write_video(path, [(6, COLOURS[0]), (6, COLOURS[1])], gop=7, codec=codec)  # a keyframe every 0.7 s
    for start in (1.0, 4.0, 11.0):
        with open_video(str(path)) as container:
            first = next(decode_frames(container, start)).time
        assert start - 0.15 - 0.7 <= first <= start - 0.15  # one frame and a half early, within a GOP
