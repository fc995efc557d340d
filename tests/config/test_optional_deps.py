"""require(): a missing optional dependency is a one-line ConfigError naming the extra to install."""

import sys

import pytest

from rayjobs.config.config_error import ConfigError
from rayjobs.config.optional_deps import available, require


def test_an_installed_module_passes_without_being_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    require("faiss", "index", key="index")
    assert "faiss" not in sys.modules  # find_spec only: the check costs nothing when it passes


def test_a_missing_module_names_the_key_and_the_extra():
    with pytest.raises(ConfigError) as caught:
        require("no_such_module_rayjobs", "index", key="index")
    assert str(caught.value) == (
        "index: needs the 'no_such_module_rayjobs' module, not installed: pip install 'rayjobs[index]'"
    )
    assert caught.value.key == "index" and "\n" not in str(caught.value)


def test_a_blocked_import_counts_as_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # what `import faiss` then refuses, find_spec sees
    assert not available("faiss")
    with pytest.raises(ConfigError, match=r"rayjobs\[index\]"):
        require("faiss", "index", key="index")


def test_a_submodule_of_a_missing_package_is_missing_not_an_error():
    assert not available("no_such_package_rayjobs.sub")
    assert available("json.decoder")
