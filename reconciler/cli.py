"""The ``reconciler`` command: one entry point, one subcommand per job.

Exit codes are a contract with scripts (DESIGN.md): 0 ok, 1 a reconcile failed or drift was
found where asked, 2 bad input or usage.  Every listing takes ``-o json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from reconciler.errors import ConfigError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


def _cmd_sim(args: argparse.Namespace) -> int:
    """Run kubesim in the foreground with N clusters and a kubeconfig."""
    from kubesim.runtime import run_from_args  # noqa: PLC0415 - keep CLI start-up light

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="GitOps reconciliation for fleets of Kubernetes clusters.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from kubesim.runtime import add_arguments  # noqa: PLC0415

    sim = sub.add_parser(
        "sim",
        help="run simulated Kubernetes clusters (kubesim) in the foreground",
        description="Serve N simulated clusters over the real Kubernetes REST API and write "
        "a kubeconfig with one context per cluster. Stops on SIGINT or SIGTERM.",
    )
    add_arguments(sim)
    sim.set_defaults(handler=_cmd_sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the subcommand, map errors to exit codes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
