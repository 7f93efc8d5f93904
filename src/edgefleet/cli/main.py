"""The ``edgefleet`` command: one sub-command module per verb, each exposing ``register(subparsers)``.

A sub-command module adds its parser with ``set_defaults(func=run)``; ``run(args) -> int`` returns the exit code.
Adding a verb is one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgefleet import __version__

# module name under edgefleet.cli -> registered verbs live inside the module
COMMANDS: tuple[str, ...] = (
    "validate",
    "plan",
    "sync",
    "compile",
    "verify",
    "status",
    "rollout",
    "dashboard",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (pure)."""
    parser = argparse.ArgumentParser(
        prog="edgefleet",
        description="Roll compiled ONNX models out to fleets of edge devices, the GitOps way.",
    )
    parser.add_argument("--version", action="version", version=f"edgefleet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"edgefleet.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgefleet`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
