"""`python -m rayjobs.<job> key=value ...`: compose with Hydra, run, exit 0 / 1 / 2.

Exit 2 with one line on a bad config (before Ray starts), 1 when the error budget is exceeded.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

USAGE = """usage: python -m rayjobs.{job} [key=value ...] [--cfg]

  key=value   Hydra overrides, e.g. input.path=data/ output.path=out/ model=minilm_offline
  --cfg       print the composed config and exit
Config groups and keys: conf/{job}.yaml and conf/{{input,output,model,runtime}}/*.yaml
"""


def setup_logging() -> None:
    logger = logging.getLogger("rayjobs")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[rayjobs] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def run_cli(job: str, argv: Sequence[str] | None = None) -> NoReturn:
    from omegaconf import OmegaConf

    import rayjobs

    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(USAGE.format(job=job))
        sys.exit(0)
    setup_logging()
    try:
        cfg = rayjobs.compose(job, [a for a in args if a != "--cfg"])
        if "--cfg" in args:
            print(OmegaConf.to_yaml(cfg))
            sys.exit(0)
        result = rayjobs.run(cfg)
    except rayjobs.ConfigError as error:
        print(f"rayjobs {job}: config error: {error}", file=sys.stderr)
        sys.exit(2)
    print(result.summary(), flush=True)
    sys.exit(0 if result.ok else 1)
