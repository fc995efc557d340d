"""Optional dependencies a job needs, checked on the driver before Ray starts.

require("faiss", "index", key="index")   # ConfigError: pip install 'rayjobs[index]'
"""

from __future__ import annotations

import importlib.util

from rayjobs.config.config_error import ConfigError


def available(module: str) -> bool:
    """Whether `module` can be found, without importing it (importing faiss alone takes about a second)."""
    try:
        # None also when sys.modules[module] is None, the standard way to block an import.
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package, or a module without a spec
        return False


def require(module: str, extra: str, key: str) -> None:
    """Raise a one-line ConfigError naming the extra that installs `module` when it is missing."""
    if not available(module):
        raise ConfigError(key, f"needs the '{module}' module, not installed: pip install 'rayjobs[{extra}]'")
