"""`python -m rayjobs.<job> key=value ...`: compose with Hydra, run, exit 0 / 1 / 2.

Every entry point (the jobs, rayjobs.search, rayjobs.serve_index) goes through run_cli: `--help`
prints the usage, `--cfg` the composed config, and a bad config exits 2 with one line (before Ray
starts); a job exits 1 when its error budget is exceeded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from omegaconf import DictConfig

USAGE = """usage: python -m rayjobs.{job} [key=value ...] [--cfg]

  key=value   Hydra overrides, e.g. input.path=data/ output.path=out/ model=minilm_offline
  --cfg       print the composed config and exit
  --config-from-env  run the config in $RAYJOBS_CONFIG (YAML; what rayjobs.submit(cfg) sends)
Config keys: conf/{job}.yaml, and the groups it names under conf/ (input, output, model, runtime)
"""


def setup_logging() -> None:
    logger = logging.getLogger("rayjobs")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[rayjobs] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run_job(cfg: DictConfig) -> int:
    """The jobs' runner: run, print the summary line, 1 when the error budget was exceeded."""
    import rayjobs

    result = rayjobs.run(cfg)
    print(result.summary(), flush=True)
    return 0 if result.ok else 1


def run_cli(
    job: str,
    argv: Sequence[str] | None = None,
    *,
    run: Callable[[DictConfig], int | None] = run_job,
    about: str | None = None,
    refused: tuple[type[Exception], ...] = (),
) -> NoReturn:
    """Parse, compose and run one entry point, then exit with `run`'s code (None: 0).

    `about` (e.g. the module's docstring) is printed under the usage by --help; `refused` are the
    entry point's own one-line errors (e.g. a query an index cannot answer): exit 2 like a bad config.
    """
    from omegaconf import OmegaConf

    import rayjobs

    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE.format(job=job) + (f"\n{about.strip()}\n" if about else ""))
        sys.exit(0)
    setup_logging()
    try:
        if "--config-from-env" in args:  # a config rayjobs.submit(cfg) composed elsewhere
            from rayjobs.submit.job_client import config_from_env

            cfg = config_from_env()
        else:
            cfg = rayjobs.compose(job, [a for a in args if a != "--cfg"])
        if "--cfg" in args:
            print(OmegaConf.to_yaml(cfg))
            sys.exit(0)
        code = run(cfg)
    except rayjobs.ConfigError as error:
        print(f"rayjobs {job}: config error: {error}", file=sys.stderr)
        sys.exit(2)
    except refused as error:
        print(f"rayjobs {job}: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)
