"""Command-line flags generated from config dataclasses, so the CLI and the Python API share one set of options.

Each field of a config dataclass becomes one flag: the name from the field (``batch_size`` → ``--batch-size``), the
type from the annotation (``int``, ``float``, ``str``, ``X | None``, ``tuple[float, float]``; a ``bool`` that is
``False`` by default is a ``store_true`` switch, one that is ``True`` a ``--flag/--no-flag`` pair), the default from
the dataclass (or from a config *instance*, e.g. captioning's search) and the help from the field's
``metadata["help"]`` or the class docstring's ``Attributes:`` entry. A :class:`Flag` overrides any of that for the
irregular flags (``--any-length`` sets ``complete_only=False``; ``--micro-batch 0`` means ``None``).

The flags of several classes may share one parser (``fuse optimize`` shows the union of every optimizer config's
fields); :meth:`ConfigFlags.build` makes the chosen class from the flags given, refuses a flag that class lacks, and
turns the class's own validation (``__post_init__``'s ``ValueError``) into an argparse error naming the flag.

Example:
    >>> import argparse
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Cfg:
    ...     '''Attributes:
    ...         batch_size: candidates per step.
    ...         cache: remember evaluations.
    ...     '''
    ...     batch_size: int = 64
    ...     cache: bool = True
    >>> p = argparse.ArgumentParser()
    >>> flags = ConfigFlags([Cfg]).add_to(p)
    >>> args = p.parse_args(["--batch-size", "8", "--no-cache"])
    >>> flags.build(Cfg, flags.given(args), p)
    Cfg(batch_size=8, cache=False)
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable


class _Unset:
    """The argparse default of every generated flag: tells a flag left out from one given with its default value."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(frozen=True)
class Flag:
    """How one field appears on the command line; every attribute left ``None`` is derived from the field.

    Attributes:
        flags: the option strings (default ``("--field-name",)``); the first names the namespace attribute.
        help: the help text (default: ``metadata["help"]``, else the class docstring's entry for the field).
        invert: a boolean field set by a switch that means its negation: ``Flag("--any-length", invert=True)`` on
            ``complete_only`` (given: ``complete_only=False``; the namespace holds ``any_length``).
        none: the command-line value that stands for ``None`` (``--micro-batch 0``).
        default: the field value the command uses when the flag is left out, where it is not the field's default
            (``fuse flow train --checkpoint-every`` 250); it may be ``None`` for a command that fills it in itself.
        default_help: how the help shows the default (``"n-tokens × batch-size"``) instead of its value.
        type, choices, metavar: argparse's (the type is taken from the annotation otherwise).
        skip: no flag for this field (an object no command line can spell, such as a probe's draft chain).
    """

    flags: tuple[str, ...] | None = None
    help: str | None = None
    invert: bool = False
    none: Any = UNSET
    default: Any = UNSET
    default_help: str | None = None
    type: Callable | None = None
    choices: tuple | None = None
    metavar: str | tuple | None = None
    skip: bool = False


# -- reading a dataclass ---------------------------------------------------------------------------
_ENTRY = re.compile(r"^(\s*)([A-Za-z_][\w, ]*?):\s*(.*)$")


def docstring_attributes(cls) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` sections of ``cls`` and its bases (Google style; ``a, b: text``
    documents both), with reST markup (````x````, ``:class:`~a.B```) reduced to plain text."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        lines = doc.splitlines()
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:") + 1
        except StopIteration:
            continue
        names, indent = None, None
        for line in lines[start:]:
            if not line.strip():
                continue
            m = _ENTRY.match(line)
            here = len(line) - len(line.lstrip())
            if indent is None:
                indent = here
            if here < indent:
                break  # the next section
            if m and here == indent:
                names = [n.strip() for n in m.group(2).split(",")]
                for n in names:
                    out[n] = m.group(3).strip()
            elif names:
                for n in names:
                    out[n] = f"{out[n]} {line.strip()}".strip()
    return {k: _plain(v) for k, v in out.items()}


def _plain(text: str) -> str:
    """reST roles as Sphinx shows them (``:class:`~a.B``` → B, ``:mod:`a.b``` → a.b), literals unquoted."""
    text = re.sub(r":[a-z]+:`(~?)([^`]+)`", lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    return text.replace("``", "")


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _inner(tp):
    """``T`` for ``T | None`` (``None`` is only ever a default, or a ``Flag(none=...)`` spelling); ``tp`` otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _dashed(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class _Spec:
    """One generated flag: a field name, its option strings and how values cross between namespace and field."""

    field: str
    dest: str
    flags: tuple[str, ...]
    override: Flag
    kind: str  # "value", "switch" (store_true), "pair" (--x/--no-x)
    cli_default: Any  # what the namespace holds when the flag is left out
    field_default: Any  # what the config gets then (UNSET: the class's own default)

    def to_field(self, value):
        o = self.override
        if o.invert:
            return not value
        if o.none is not UNSET and value == o.none:
            return None
        if isinstance(value, list):
            return tuple(value)
        return value

    def to_cli(self, value):
        o = self.override
        if o.invert:
            return not value
        if o.none is not UNSET and value is None:
            return o.none
        return list(value) if isinstance(value, tuple) else value


class _Pair(argparse.Action):
    """``--flag`` / ``--no-flag`` for a boolean that is on by default (argparse 3.11's BooleanOptionalAction would
    print the UNSET default)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, not option_string.startswith("--no-"))

    def format_usage(self) -> str:
        return " | ".join(self.option_strings)


class FlagError(ValueError):
    """A config's validation error, with the flags of the fields it names."""

    def __init__(self, flags: list[str], message: str):
        super().__init__(message)
        self.flags = flags

    def __str__(self) -> str:
        msg = self.args[0]
        return f"argument {'/'.join(self.flags)}: {msg}" if self.flags else msg


class ConfigFlags:
    """The flags of the fields of one or more config dataclasses (their union, in field order).

    Args:
        classes: the config dataclasses; a field several of them have is one flag.
        base: a config instance whose values are the defaults (``fuse caption``: the captioning search) for the
            fields it has; the others default to the first class that has them.
        flags: per-field :class:`Flag` overrides.
        skip: fields that get no flag.
        only: when given, just these fields get flags.
        labels: how help and errors name each class (``{GCGConfig: "gcg"}``; default the class name).
    """

    def __init__(self, classes, *, base=None, flags: dict[str, Flag] | None = None, skip=(), only=None,
                 labels: dict | None = None):
        self.classes = list(classes)
        self.labels = dict(labels or {})
        self.base = base
        overrides = dict(flags or {})
        unknown = set(overrides) - {f.name for c in self.classes for f in dataclasses.fields(c)}
        if unknown:
            raise ValueError(f"flag overrides for fields no config has: {sorted(unknown)}")
        self.specs: dict[str, _Spec] = {}
        for cls in self.classes:
            hints = _hints(cls)
            for f in dataclasses.fields(cls):
                if f.name in self.specs or not f.init or (only is not None and f.name not in only) or f.name in skip:
                    continue
                o = overrides.get(f.name, Flag())
                if o.skip:
                    continue
                self.specs[f.name] = self._spec(f, hints[f.name], o)

    def label(self, cls) -> str:
        return self.labels.get(cls, cls.__name__)

    def owners(self, name: str) -> list[str]:
        """The labels of the classes that have field ``name``."""
        return [self.label(c) for c in self.classes if name in {f.name for f in dataclasses.fields(c)}]

    # -- building the parser ---------------------------------------------------------------------
    def _default_of(self, name: str):
        if self.base is not None and hasattr(self.base, name):
            return getattr(self.base, name)
        for cls in self.classes:
            for f in dataclasses.fields(cls):
                if f.name == name:
                    if f.default is not dataclasses.MISSING:
                        return f.default
                    if f.default_factory is not dataclasses.MISSING:
                        return f.default_factory()
                    return None
        raise KeyError(name)

    def _spec(self, f, tp, o: Flag) -> _Spec:
        field_default = o.default
        value = self._default_of(f.name) if field_default is UNSET else field_default
        inner = _inner(tp)
        flags = o.flags or (_dashed(f.name),)
        if inner is bool and not o.invert:
            kind = "switch" if value is False else "pair"
            if kind == "pair" and len(flags) == 1:
                flags = (flags[0], "--no-" + flags[0][2:])
        elif inner is bool:
            kind = "switch"
        else:
            kind = "value"
        dest = flags[0].lstrip("-").replace("-", "_")
        spec = _Spec(f.name, dest, tuple(flags), o, kind, None, field_default)
        spec.cli_default = spec.to_cli(value)
        return spec

    def add_to(self, parser, title: str | None = None, description: str | None = None) -> ConfigFlags:
        """Add every flag to ``parser`` (in an argument group when ``title`` is given); returns ``self``."""
        target = parser.add_argument_group(title, description) if title else parser
        docs: dict[str, str] = {}
        for cls in reversed(self.classes):
            docs.update(docstring_attributes(cls))
        for cls in self.classes:  # metadata["help"] wins over the docstring
            docs.update({f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata})
        for name, spec in self.specs.items():
            cls = next(c for c in self.classes if name in {f.name for f in dataclasses.fields(c)})
            tp = _hints(cls)[name]
            o = spec.override
            text = o.help if o.help is not None else docs.get(name, "")
            owners = self.owners(name)
            if 1 < len(self.classes) and len(owners) < len(self.classes):
                text = f"[{', '.join(owners)}] {text}"
            shown = o.default_help if o.default_help is not None else spec.cli_default
            if spec.kind == "value" and shown is not None and "default" not in text.lower():
                text = f"{text.removesuffix('.')} (default: {_show(shown)})".strip()
            elif spec.kind == "pair":
                text = f"{text.removesuffix('.')} (default: {spec.flags[0] if spec.cli_default else spec.flags[1]})".strip()
            kw: dict[str, Any] = dict(dest=spec.dest, default=UNSET, help=text.replace("%", "%%"))
            if spec.kind == "switch":
                kw["action"] = "store_true"
            elif spec.kind == "pair":
                kw["action"] = _Pair
            else:
                inner = _inner(tp)
                if typing.get_origin(inner) is tuple:
                    args = typing.get_args(inner)
                    kw["nargs"] = "+" if len(args) == 2 and args[1] is Ellipsis else len(args)
                    inner = args[0]
                kw["type"] = o.type or inner
                if kw["type"] not in (int, float, str) and o.type is None:
                    raise TypeError(f"{cls.__name__}.{name}: no command-line form for {tp!r}; give a Flag(type=...) or skip it")
                if o.choices is not None:
                    kw["choices"] = o.choices
                if o.metavar is not None:
                    kw["metavar"] = o.metavar
            target.add_argument(*spec.flags, **kw)
        return self

    # -- reading the namespace back ----------------------------------------------------------------
    def given(self, args) -> dict[str, Any]:
        """The field values of the flags given on the command line; every flag left out gets its default in
        ``args`` (so the namespace reads as plain values afterwards)."""
        out = {}
        for name, spec in self.specs.items():
            value = getattr(args, spec.dest, UNSET)
            if value is UNSET:
                setattr(args, spec.dest, spec.cli_default)
            else:
                out[name] = spec.to_field(value)
        return out

    def defaults(self) -> dict[str, Any]:
        """The field values a command uses in place of the class's defaults (``Flag(default=...)``)."""
        return {n: s.field_default for n, s in self.specs.items() if s.field_default is not UNSET}

    def flag(self, name: str) -> str:
        """The option string of a field (``batch_size`` → ``--batch-size``)."""
        return self.specs[name].flags[0] if name in self.specs else name

    def build(self, cls, given: dict[str, Any], parser=None, *, base=None, **fixed):
        """``cls`` from the given flags, on top of ``base``'s values for the fields ``cls`` has (else the
        ``Flag(default=...)`` values and the class's defaults), with ``fixed`` fields set by the command.

        A flag given for a field ``cls`` lacks, and a ``ValueError`` of ``cls``'s validation, end in
        ``parser.error`` naming the flags (or raise :class:`FlagError` without a parser)."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        foreign = [n for n in given if n not in names]
        try:
            if foreign:
                what = "; ".join(f"{self.flag(n)} is an option of {' / '.join(self.owners(n))}" for n in foreign)
                raise FlagError([self.flag(n) for n in foreign], f"{what}, not of {self.label(cls)}")
            values = {n: getattr(base, n) for n in names if base is not None and hasattr(base, n)}
            values.update({n: v for n, v in self.defaults().items() if n in names and n not in values})
            values.update(given)
            values.update(fixed)
            try:
                return cls(**values)
            except ValueError as e:
                raise FlagError(self.flags_named(str(e)), str(e)) from None
        except FlagError as e:
            if parser is None:
                raise
            parser.error(str(e))

    def flags_named(self, message: str) -> list[str]:
        """The flags whose fields a message names (``n_tokens must be ...`` → ``--n-tokens``)."""
        return [s.flags[0] for n, s in self.specs.items() if re.search(rf"\b{re.escape(n)}\b", message)]


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return '""' if value == "" else str(value)


def after_parse(parser: argparse.ArgumentParser, finish: Callable[[argparse.ArgumentParser, argparse.Namespace], None]):
    """Run ``finish(parser, namespace)`` right after ``parser`` parses (also as a sub-command's parser), so that
    configs are built and validated by ``parse_args`` itself and their errors are argparse errors of that parser."""
    inner = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, rest = inner(args, namespace)
        finish(parser, namespace)
        return namespace, rest

    parser.parse_known_args = parse_known_args
    return parser


def on_first_parse(parser: argparse.ArgumentParser, add: Callable[[argparse.ArgumentParser], None]):
    """Call ``add(parser)`` (which adds the flags, and may call :func:`after_parse`) just before ``parser`` first
    parses: a sub-command whose config lives in a module that is slow to import (``fuse flow``: transformers) costs
    nothing to the other commands, and its ``--help`` still lists every flag."""
    inner = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        parser.parse_known_args = inner
        add(parser)
        return parser.parse_known_args(args, namespace)

    parser.parse_known_args = parse_known_args
    return parser


__all__ = ["Flag", "ConfigFlags", "FlagError", "UNSET", "after_parse", "on_first_parse", "docstring_attributes"]
