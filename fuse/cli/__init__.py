"""The ``fuse`` command line. Each sub-command lives in its own module with a ``register(sub)``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Commands that split their work across the ranks of a torchrun job (docs/scale-out.md); under
# torchrun every other command runs on rank 0 alone while the other ranks exit at once.
DATA_PARALLEL = {"optimize", "caption"}

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
    from fuse.parallel import runtime
    from fuse.parallel.collectives import RankFailed

    parser = build_parser()
    try:  # the sub-commands build and validate their configs while parsing (fuse.cli.options)
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, a usage error (printed by argparse): the exit status, returned
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    if runtime.launched() and args.command not in DATA_PARALLEL and runtime.launch_rank() != 0:
        return 0  # a command without a data-parallel form: rank 0 runs it as one process
    created = args.command in DATA_PARALLEL and not runtime.initialized() and runtime.init_from_env()
    runtime.configure_logging(level)
    ok = False
    try:
        with runtime.main_stdout():  # results print once, on rank 0
            code = int(args.func(args) or 0)
        ok = True
        return code
    except (ValueError, RankFailed) as e:  # user errors and failed ranks or jobs: one clear line, no traceback
        if runtime.is_main() or not isinstance(e, RankFailed):  # RankFailed is raised alike on every rank
            where = "" if runtime.is_main() else f" (rank {runtime.rank()})"
            print(f"fuse: error{where}: {e}", file=sys.stderr)
        return 2
    finally:
        if created:
            runtime.shutdown(sync=ok)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
