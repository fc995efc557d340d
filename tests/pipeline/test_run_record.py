import fsspec
import pytest

from rayjobs.pipeline import run_record


@pytest.mark.parametrize(
    ("numbers", "text"),
    [(set(), ""), ({4}, "4"), ({0, 1, 2, 5, 7, 8}, "0-2,5,7-8"), (set(range(1000)), "0-999")],
)
def test_ranges_round_trip(numbers, text):
    assert run_record.encode_ranges(numbers) == text
    assert run_record.decode_ranges(text) == numbers


def test_fingerprint_is_stable_and_sensitive():
    a = run_record.fingerprint({"model": "x", "batch": [1, 2]})
    assert a == run_record.fingerprint({"batch": [1, 2], "model": "x"})
    assert a != run_record.fingerprint({"model": "y", "batch": [1, 2]})


def test_progress_and_record_files(tmp_path):
    fs = fsspec.filesystem("file")
    root = str(tmp_path)
    assert run_record.read_progress(fs, root) == set()
    run_record.write_progress(fs, root, {3, 1, 2, 9})
    assert run_record.read_progress(fs, root) == {1, 2, 3, 9}
    assert run_record.read_record(fs, root) is None
    run_record.write_record(fs, root, {"job": "embed_texts", "stats": {"rows": 3}})
    assert run_record.read_record(fs, root)["stats"]["rows"] == 3
    assert not run_record.has_success(fs, root)
    run_record.write_success(fs, root)
    assert run_record.has_success(fs, root)
    assert not list(tmp_path.glob("*.tmp"))
