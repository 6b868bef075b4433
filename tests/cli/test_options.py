"""Flags generated from config dataclasses (fuse.cli.options), and the optimizer flags of ``fuse optimize``."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from fuse.cli import build_parser, main
from fuse.cli.optimize import CONFIG_CLASSES, OPTIMIZER_OPTIONS, job_options
from fuse.cli.options import ConfigFlags, Flag, FlagError, after_parse, docstring_attributes


@dataclass
class Base:
    """Shared options.

    Attributes:
        n_tokens: free tokens, ``n`` of them.
        a, b: two weights (see :class:`~fuse.optim.config.GCGConfig`).
        cache: remember evaluations.
    """

    n_tokens: int = 8
    a: float = 0.5
    b: float | None = None
    cache: bool = True
    early: bool = False
    micro: int | None = 8
    pair: tuple[float, float] = (1.0, 2.0)
    keep: bool = True

    def __post_init__(self):
        if self.n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {self.n_tokens}")


@dataclass
class Child(Base):
    """Attributes:
        top_k: candidates per position, 10%.
    """

    top_k: int = field(default=256, metadata={"help": "from the metadata"})


FLAGS = {"micro": Flag(none=0), "keep": Flag(("--drop",), invert=True), "pair": Flag(metavar=("X", "Y"))}


def _parser(classes=(Base, Child), **kw):
    p = argparse.ArgumentParser(prog="t")
    flags = ConfigFlags(classes, flags=FLAGS, **kw).add_to(p)
    return p, flags


def test_docstring_attributes_read_the_mro_and_plain_text():
    docs = docstring_attributes(Child)
    assert docs["n_tokens"] == "free tokens, n of them."
    assert docs["a"] == docs["b"] == "two weights (see GCGConfig)."
    assert docs["top_k"] == "candidates per position, 10%."


def test_flags_types_defaults_and_help():
    p, flags = _parser()
    text = p.format_help()
    for flag in ("--n-tokens", "--a", "--b", "--cache, --no-cache", "--early", "--micro", "--pair X Y", "--drop", "--top-k"):
        assert flag in text, flag
    assert "from the metadata" in text and "(default: 8)" in text and "(default: --cache)" in text
    assert "[Child] from the metadata" in text  # an option only some classes have says which
    args = p.parse_args([])
    assert flags.given(args) == {} and (args.n_tokens, args.micro, args.drop, args.pair) == (8, 8, False, [1.0, 2.0])
    args = p.parse_args(["--n-tokens", "3", "--b", "0.25", "--no-cache", "--early", "--micro", "0", "--pair", "3", "4",
                         "--drop", "--top-k", "5"])
    given = flags.given(args)
    assert given == dict(n_tokens=3, b=0.25, cache=False, early=True, micro=None, pair=(3.0, 4.0), keep=False, top_k=5)
    assert flags.build(Child, given, p) == Child(3, 0.5, 0.25, False, True, None, (3.0, 4.0), False, 5)


def test_a_flag_given_with_its_default_value_counts_as_given():
    p, flags = _parser()
    assert flags.given(p.parse_args(["--n-tokens", "8"])) == {"n_tokens": 8}


def test_build_refuses_a_flag_the_class_lacks_and_names_the_flag_of_a_validation_error(capsys):
    p, flags = _parser()
    with pytest.raises(FlagError, match="--top-k is an option of Child, not of Base"):
        flags.build(Base, {"top_k": 3})
    with pytest.raises(FlagError, match="argument --n-tokens: n_tokens must be >= 1"):
        flags.build(Base, {"n_tokens": 0})
    with pytest.raises(SystemExit):
        flags.build(Base, {"n_tokens": 0}, p)
    assert "t: error: argument --n-tokens: n_tokens must be >= 1, got 0" in capsys.readouterr().err


def test_base_instance_gives_the_defaults_and_flag_defaults_replace_the_fields():
    base = Child(n_tokens=4, top_k=9)
    p = argparse.ArgumentParser()
    flags = ConfigFlags([Child], base=base, flags={"a": Flag(default=0.75)}).add_to(p)
    args = p.parse_args([])
    assert flags.given(args) == {} and (args.n_tokens, args.top_k, args.a) == (4, 9, 0.75)
    assert flags.build(Child, {}, p, base=base) == dataclasses.replace(base)  # the base wins over Flag(default=)
    assert flags.build(Child, {}, p).a == 0.75


def test_unsupported_types_and_unknown_overrides_are_refused():
    @dataclass
    class Odd:
        obj: object = None

    with pytest.raises(TypeError, match="no command-line form"):
        ConfigFlags([Odd]).add_to(argparse.ArgumentParser())
    ConfigFlags([Odd], flags={"obj": Flag(skip=True)}).add_to(argparse.ArgumentParser())
    with pytest.raises(ValueError, match="no config has"):
        ConfigFlags([Odd], flags={"nope": Flag()})


def test_after_parse_runs_on_a_subcommand_parser():
    root = argparse.ArgumentParser()
    sub = root.add_subparsers(dest="cmd")
    p = sub.add_parser("x")
    p.add_argument("--n", type=int, default=1)
    after_parse(p, lambda parser, ns: setattr(ns, "twice", 2 * ns.n))
    assert root.parse_args(["x", "--n", "4"]).twice == 8


# -- fuse optimize ----------------------------------------------------------------------------------
def test_every_optimizer_field_is_a_flag_of_fuse_optimize():
    """Every field of every optimizer config (but the probe's draft chain: --probe-draft MODEL) has a flag."""
    names = {f.name for c in CONFIG_CLASSES.values() for f in dataclasses.fields(c)} - {"probe"}
    assert set(OPTIMIZER_OPTIONS.specs) == names
    text = build_parser()._subparsers._group_actions[0].choices["optimize"].format_help()
    for name in names:
        assert OPTIMIZER_OPTIONS.flag(name) in text, name


@pytest.mark.parametrize("argv,field,value", [
    (["--any-length", "--optimizer", "autodan"], "complete_only", False),
    (["--no-progress"], "progress", False),
    ([], "progress", True),  # the command shows its bars by default (the dataclass's default is False)
    (["--optimizer", "autodan", "--no-gradient"], "use_gradient", False),
    (["--optimizer", "autodan", "--lm-weight", "0.5"], "lm_weight", 0.5),
    (["--optimizer", "pez", "--lr", "0.2"], "lr", 0.2),
    (["--patience", "3"], "patience", 3),
    (["--no-cache"], "cache", False),
    (["--combine", "0"], "combine", 0),
    (["--eval-batch-size", "4"], "eval_batch_size", 4),
    (["--cascade", "0.25"], "cascade", 0.25),
    ([], "cascade", None),
    (["--vocabulary", "printable"], "vocabulary", "printable"),
    ([], "vocabulary", "readable"),
])
def test_optimize_flags_reach_the_config(argv, field, value):
    args = build_parser().parse_args(["optimize", "--primary", "x", *argv])
    assert getattr(args.config, field) == value


def test_optimize_micro_batch_zero_means_none_and_errors_name_the_flag(capsys):
    args = build_parser().parse_args(["optimize", "--primary", "x", "--micro-batch", "0"])
    assert args.parallel.micro_batch is None and args.micro_batch == 0
    base = ["optimize", "--primary", "x"]
    for argv, msg in ((["--optimizer", "random", "--accept", "always"], "--accept is an option of gcg, not of random"),
                      (["--optimizer", "gcg", "--any-length"], "--any-length is an option of autodan, not of gcg"),
                      (["--n-replace", "3", "--n-tokens", "2"], "argument --n-tokens/--n-replace: n_replace=3 exceeds"),
                      (["--optimizer", "pez", "--search", "beam"], "argument --search: PEZ optimizes one continuous"),
                      (["--budget", "0"], "argument --budget: budget must be an integer >= 1")):
        assert main(base + argv) == 2
        err = capsys.readouterr().err
        assert f"fuse optimize: error: {msg}" in err or msg in err, (argv, err)


def test_the_job_id_of_an_old_command_does_not_change():
    """Flags that came with the generated options count in the job id only when changed."""
    args = build_parser().parse_args(["optimize", "--primary", "x", "--targets", "t.txt", "--output", "r.jsonl"])
    args.micro_batch = args.parallel.micro_batch
    opts = job_options(args)
    old = {"primary", "primary_weight", "secondary", "target_text", "target_continuation", "mellowmax", "device",
           "dtype", "prefix", "n_tokens", "init_text", "budget", "batch_size", "optimizer", "search", "beam_width",
           "top_k", "n_replace", "buffer_size", "accept", "combine", "early_stop", "probe_draft", "any_length", "seed",
           "micro_batch"}
    assert set(opts) == old
    args = build_parser().parse_args(["optimize", "--primary", "x", "--patience", "2"])
    assert job_options(args)["patience"] == 2
