"""The ``fuse`` command line. Each sub-command lives in its own module with a ``register(sub)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One module per command group; each defines register(subparsers).
COMMANDS = [
    "fuse.cli.models",
    "fuse.cli.adapter",
    "fuse.cli.demo",
    "fuse.cli.optimize",
    "fuse.cli.flow",
    "fuse.cli.forecast",
    "fuse.cli.planner",
    "fuse.cli.caption",
]


def build_parser() -> argparse.ArgumentParser:
    from fuse._version import __version__

    parser = argparse.ArgumentParser(prog="fuse", description="Carry gradients between frozen models with different tokenizers.")
    parser.add_argument("--version", action="version", version=f"fuse {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # user errors: one clear line, no traceback
        print(f"fuse: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
