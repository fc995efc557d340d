"""`rayjobs`: submit jobs to a Ray cluster and follow them.

    rayjobs submit embed_texts input.path=s3://b/texts output.path=s3://b/out [--address URL]
    rayjobs status <id>            state, rows done / total, errors, rows/s, ETA, usage
    rayjobs list                   recent jobs, the same columns
    rayjobs logs <id> [--follow]
    rayjobs cancel <id>            stops it; the output stays resumable: submit the same command again

The cluster: --address, else RAY_ADDRESS, else the dashboard of a head on this machine
(http://127.0.0.1:8265). Exit codes: 0 done, 1 the cluster failed us, 2 a bad config or job id.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rayjobs.config.config_error import ConfigError
from rayjobs.submit.job_client import (
    ClusterError,
    UnknownJob,
    job_handle,
    list_jobs,
    status_line,
    submit,
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="rayjobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("submit", help="submit python -m rayjobs.<job> overrides... to the cluster")
    sub.add_argument("job")
    sub.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    sub.add_argument("--working-dir", default=".", help="uploaded with the job (default: .)")
    sub.add_argument(
        "--no-check", action="store_true", help="skip the local config check (paths only the cluster sees)"
    )
    for name, text in (
        ("status", "a job's state and progress"),
        ("logs", "a job's logs"),
        ("cancel", "stop a job"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")
        if name == "status":
            command.add_argument("--json", action="store_true", help="the status as JSON")
        if name == "logs":
            command.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    listing = commands.add_parser("list", help="recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    for command in commands.choices.values():
        command.add_argument(
            "--address", default=None, help="Ray dashboard URL (default: RAY_ADDRESS, then 127.0.0.1:8265)"
        )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "submit":
            handle = submit(
                args.job,
                args.overrides,
                address=args.address,
                working_dir=args.working_dir,
                check=not args.no_check,
            )
            print(handle.id, flush=True)
        elif args.command == "status":
            status = job_handle(args.id, args.address).status()
            print(json.dumps(status, default=str) if args.json else status_line(status))
        elif args.command == "list":
            for status in list_jobs(args.address, args.limit):
                print(status_line(status))
        elif args.command == "logs":
            handle = job_handle(args.id, args.address)
            if args.follow:
                for text in handle.follow():
                    print(text, end="", flush=True)
            else:
                print(handle.logs(), end="")
        elif args.command == "cancel":
            handle = job_handle(args.id, args.address)
            stopped = handle.cancel()
            print(f"{args.id}: {'stopping' if stopped else 'already ' + handle.status()['state']}")
    except ConfigError as error:
        print(f"rayjobs {args.command}: config error: {error}", file=sys.stderr)
        return 2
    except ClusterError as error:
        print(f"rayjobs {args.command}: {error}", file=sys.stderr)
        return 2 if isinstance(error, UnknownJob) else 1
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
