"""Run ``fuse forecast`` in-process, as the tests of this folder do."""

import argparse


def run_cli(argv):
    """Parse ``fuse forecast ARGV`` with the command's own parser and run it; returns its exit code."""
    from fuse.cli import forecast as cli

    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    cli.register(sub)
    args = p.parse_args(["forecast", *argv])
    return args.func(args)
