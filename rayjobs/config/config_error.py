"""The one error type for a bad config: it names the key and says what is wrong, in one line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; raised before Ray starts."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
