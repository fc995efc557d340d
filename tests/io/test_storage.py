import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayjobs.io import storage


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@pytest.mark.parametrize(
    "error",
    [
        ConnectionResetError("peer"),
        TimeoutError("slow"),
        OSError("503 Service Unavailable"),
        OSError("SlowDown"),
    ],
)
def test_transient_errors_are_retried(error):
    call = Flaky(3, error)
    assert storage.retrying(call, first_delay=0.001) == "ok" and call.calls == 4


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError("gone"), PermissionError("no"), ValueError("bad data"), OSError("invalid header")],
)
def test_permanent_errors_are_not(error):
    call = Flaky(1, error)
    with pytest.raises(type(error)):
        storage.retrying(call, first_delay=0.001)
    assert call.calls == 1


def test_retries_give_up_after_their_attempts():
    call = Flaky(10, TimeoutError("slow"))
    with pytest.raises(TimeoutError):
        storage.retrying(call, attempts=3, first_delay=0.001)
    assert call.calls == 3


def test_local_writes_leave_no_partial_files(tmp_path):
    fs, root = storage.filesystem(str(tmp_path / "a" / "b"))
    storage.write_parquet(fs, storage.join(root, "x.parquet"), pa.table({"v": [1, 2]}))
    storage.write_bytes(fs, storage.join(root, "y.txt"), b"hello")
    assert pq.read_table(tmp_path / "a" / "b" / "x.parquet")["v"].to_pylist() == [1, 2]
    assert storage.read_text(fs, storage.join(root, "y.txt")) == "hello"
    assert storage.read_text(fs, storage.join(root, "missing")) is None
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["x.parquet", "y.txt"]


def test_is_local():
    assert storage.is_local(fsspec.filesystem("file"))
    assert not storage.is_local(fsspec.filesystem("memory"))
