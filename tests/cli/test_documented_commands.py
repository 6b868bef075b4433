"""Every ``fuse ...`` command that README.md and docs/*.md show parses with the real command line (no run).

Commands are taken from fenced code blocks (one per line, ``\\`` continuations joined, ``&&`` / ``;`` chains split,
comments cut) and from inline code spans; ``torchrun ... --no-python fuse ...`` and ``python -m fuse ...`` count as
``fuse ...``. Each is handed to ``fuse.cli.build_parser().parse_args``, which also builds and validates the configs
the flags make (``fuse optimize``'s optimizer config, ``fuse caption``'s CaptionConfig), so a documented flag that does
not exist, a value out of range or a flag for an optimizer that lacks it fails here. A placeholder (``...``) or an
inline mention of a command (``fuse caption``, ``fuse adapter build/eval``, ``fuse optimize --targets``) may leave
required arguments and a flag's value out; nothing else is excused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from fuse.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_LAUNCH = re.compile(r"^(?:.*?--no-python\s+|(?:python3?|torchrun)\b.*?-m\s+)?(fuse\s+\S.*)$")
# what a mention may leave out: required arguments, a flag's value (`fuse optimize --targets`)
_FRAGMENT = re.compile(r"the following arguments are required|expected (one|\d+) arguments?$")


def _commands_in(text: str) -> list[str]:
    """The ``fuse`` invocations in one piece of shell text (a code block, or an inline span)."""
    out = []
    text = re.sub(r"\s*\\\n\s*", " ", text)
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment (not a '#' inside a word)
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
            part = part.strip().removeprefix("$ ").strip()
            m = _LAUNCH.match(part)
            if m and not part.startswith("fuse."):
                out.append(m.group(1))
    return out


def documented_commands(pages=PAGES) -> list[tuple[str, str, bool]]:
    """``(where, command, inline)`` for every ``fuse`` command shown in ``pages``."""
    found = []
    for page in pages:
        text = page.read_text()
        name = page.relative_to(ROOT) if page.is_relative_to(ROOT) else page.name
        for m in _FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found += [(f"{name}:{line}", c, False) for c in _commands_in(m.group(1))]
        rest = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # inline spans outside code blocks
        for m in _INLINE.finditer(rest):
            line = rest.count("\n", 0, m.start()) + 1
            found += [(f"{name}:{line}", c, True) for c in _commands_in(m.group(1).replace("\n", " "))]
    return found


def _argvs(command: str) -> list[list[str]]:
    """The argument lists of a command: ``fuse adapter build/eval`` stands for two; a placeholder ``...`` is dropped."""
    argv = [a for a in shlex.split(command)[1:] if a not in ("...", "…")]
    if len(argv) > 1 and "/" in argv[1] and not argv[1].startswith("-") and argv[0] in ("adapter", "flow", "planner"):
        return [[argv[0], alt, *argv[2:]] for alt in argv[1].split("/")]
    if argv and "/" in argv[0] and not argv[0].startswith("-"):  # `fuse optimize/caption ...`
        return [[alt, *argv[1:]] for alt in argv[0].split("/")]
    return [argv]


def _exact(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its sub-commands' parsers without argparse's abbreviations: a page must spell a flag in full
    (``--n-token`` would otherwise pass as ``--n-tokens``)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _exact(sub)
    return parser


def parse_error(argv: list[str]) -> str | None:
    """The error ``fuse`` reports for ``argv`` at parse time (``None``: it parses)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _exact(build_parser()).parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            return err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else f"exit {e.code}"
    return None


def check(command: str, inline: bool) -> list[str]:
    """The problems of one documented command (empty: it parses as documented)."""
    problems = []
    for argv in _argvs(command):
        error = parse_error(argv)
        if error is None:
            continue
        fragment = inline or "..." in command or "…" in command
        if fragment and _FRAGMENT.search(error):
            continue
        problems.append(f"{' '.join(argv)!r}: {error}")
    return problems


COMMANDS = documented_commands()


def test_the_pages_show_commands():
    """The extraction finds the commands the pages are known to show (so an empty list cannot pass)."""
    shown = {c.split()[1] for _, c, _ in COMMANDS if len(c.split()) > 1}
    assert {"demo", "optimize", "caption", "forecast", "flow", "planner", "adapter"} <= shown
    assert any("--no-python fuse" in p.read_text() for p in PAGES)  # torchrun launches are among them
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where,command,inline", COMMANDS, ids=[f"{w} {c[:60]}" for w, c, _ in COMMANDS])
def test_documented_command_parses(where, command, inline):
    assert check(command, inline) == [], where


def test_a_planted_bad_flag_fails(tmp_path):
    """A page showing a flag fuse does not have, a bad value or an option of another optimizer is caught."""
    page = tmp_path / "planted.md"
    page.write_text("Run `fuse optimize --primary bundled:smollm2-135m --no-such-flag 3`.\n\n"
                    "```bash\nfuse caption photo.jpg --n-tokens 0\n"
                    "torchrun --nproc_per_node 2 --no-python fuse optimize --primary x \\\n  --optimizer autodan --top-k 8\n"
                    "python -m fuse caption photo.jpg --optimizer pez --search beam\n```\n")
    found = {c: check(c, inline) for _, c, inline in documented_commands([page])}
    assert sorted(found) == sorted(["fuse optimize --primary bundled:smollm2-135m --no-such-flag 3",
                                    "fuse caption photo.jpg --n-tokens 0",
                                    "fuse optimize --primary x --optimizer autodan --top-k 8",
                                    "fuse caption photo.jpg --optimizer pez --search beam"])
    problems = list(found.values())
    assert all(problems), found
    assert "unrecognized arguments: --no-such-flag" in found["fuse optimize --primary bundled:smollm2-135m --no-such-flag 3"][0]
    assert "argument --n-tokens: n_tokens must be an integer >= 1" in found["fuse caption photo.jpg --n-tokens 0"][0]
    assert "--top-k is an option of gcg, not of autodan" in found["fuse optimize --primary x --optimizer autodan --top-k 8"][0]
    assert "argument --search" in found["fuse caption photo.jpg --optimizer pez --search beam"][0]
    # an inline mention may leave required arguments out, but not misspell a flag
    assert check("fuse caption", inline=True) == [] and check("fuse caption --n-token 3", inline=True)
