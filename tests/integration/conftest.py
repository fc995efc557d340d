"""Fixtures of the integration tests: a local S3 (moto) on 127.0.0.1."""

import pytest


@pytest.fixture(scope="session")
def s3():
    """(s3fs filesystem, storage options) for a fresh bucket on a local moto server."""
    import s3fs
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir("rayjobs-test")
    yield fs, options
    server.stop()


def storage_overrides(options: dict) -> list[str]:
    """Hydra overrides that point input and output at the given fsspec options."""
    return [f"+{group}.storage_options.{k}={v}" for group in ("input", "output") for k, v in options.items()]
