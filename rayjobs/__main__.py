"""`python -m rayjobs ...`: the `rayjobs` command (submit, status, list, logs, cancel)."""

from rayjobs.submit.command_line import run

run()
