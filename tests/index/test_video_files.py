"""Byte ranges of serve_index's video answers, and the video root build_index records."""

import pytest

from rayjobs.build_index import video_root
from rayjobs.serve_index import Unsatisfiable, byte_span, requested_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-50", (950, 999)),
        ("bytes=-5000", (0, 999)),  # a suffix longer than the file: all of it
        ("bytes=990-5000", (990, 999)),  # the end clamped to the file
        ("bytes=999-999", (999, 999)),
        ("BYTES=1-2", (1, 2)),  # the unit is case-insensitive
        ("bytes=0-" + "9" * 5000, (0, 999)),  # a huge end is just past the file
        (None, None),
        ("", None),
        ("bytes=5-2", None),  # last before first: invalid, so ignored
        ("bytes=0-1,5-6", None),  # several ranges: the whole file instead
        ("bytes=-", None),
        ("items=0-1", None),
        ("bytes=a-b", None),
    ],
)
def test_requested_range(header, span):
    assert requested_range(header, SIZE) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=" + "9" * 30 + "-"])
def test_ranges_past_the_end_are_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        requested_range(header, SIZE)


@pytest.mark.parametrize(
    ("header", "span"),
    [
        (None, (0, 99, True)),  # a bigger file than one answer carries: its first part, as a 206
        ("bytes=0-", (0, 99, True)),
        ("bytes=950-", (950, 999, True)),
        ("bytes=10-19", (10, 19, True)),
        ("bytes=-500", (500, 599, True)),
    ],
)
def test_one_answer_carries_at_most_the_limit(header, span):
    assert byte_span(header, SIZE, 100) == span


def test_a_small_file_asked_for_whole_is_a_200():
    assert byte_span(None, 50, 100) == (0, 49, False) and byte_span(None, 0, 100) == (0, -1, False)
    assert byte_span("bytes=0-", 50, 100) == (0, 49, True)


def test_nothing_of_an_empty_file_can_be_asked_for():
    assert requested_range(None, 0) is None
    for header in ("bytes=0-", "bytes=-10"):
        with pytest.raises(Unsatisfiable):
            requested_range(header, 0)


def test_video_root_is_the_folder_video_paths_are_relative_to(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "list.txt").write_text("a.mp4\n")
    assert video_root({"format": "videos", "path": str(tmp_path / "videos")}) == str(tmp_path / "videos")
    listed = {"format": "videos", "path": str(tmp_path / "videos" / "list.txt")}
    assert video_root(listed) == str(tmp_path / "videos")  # names in a list are relative to its folder
    assert video_root({"format": "images", "path": str(tmp_path / "videos")}) is None
    assert video_root({}) is None
