"""Real Japanese and Chinese sentences from Debian's manpages-ja / manpages-zh (roff markup stripped).

``apt-get install -y manpages-ja manpages-zh`` puts the sources under ``/usr/share/man/ja`` and
``/usr/share/man/zh_CN`` (gzip'd roff). Sentences are cut at 。！？ (and line ends), kept when they
hold CJK characters and 8–120 characters; distinct; a seeded sample.
"""

from __future__ import annotations

import gzip
import random
import re
from pathlib import Path

from fuse.core.units import has_cjk

ROOTS = {"ja": Path("/usr/share/man/ja"), "zh": Path("/usr/share/man/zh_CN")}
_ESC = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\\*(\(..|\[[^\]]*\]|.)|\\s[+-]?\d+|\\\(..|\\\[[^\]]*\]|\\[&|^,/%:c]")


def available(lang: str) -> bool:
    root = ROOTS[lang]
    return root.is_dir() and any(root.rglob("*.gz"))


def _text(raw: bytes) -> str:
    for enc in ("utf-8", "gb18030", "euc-jp"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="ignore")


def strip_roff(src: str) -> list[str]:
    lines = []
    for line in src.splitlines():
        if line.startswith((".", "'")):
            m = re.match(r"^\.(B|I|BI|BR|IR|RB|RI|IB|SH|SS)\s+(.*)$", line)
            if not m:
                continue
            line = m.group(2).replace('"', "")
        line = _ESC.sub("", line).replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
        line = re.sub(r"\\.", "", line).strip()
        if line:
            lines.append(line)
    return lines


def sentences(lang: str, n: int, seed: int = 0, min_chars: int = 8, max_chars: int = 120) -> list[str]:
    """``n`` distinct real sentences of ``lang`` (``"ja"`` or ``"zh"``), seeded sample."""
    root = ROOTS[lang]
    out = set()
    for f in sorted(root.rglob("*.gz")):
        try:
            text = _text(gzip.decompress(f.read_bytes()))
        except (OSError, EOFError):
            continue
        for line in strip_roff(text):
            for s in re.split(r"(?<=[。！？])", line):
                s = re.sub(r"\s+", " ", s).strip()
                if min_chars <= len(s) <= max_chars and has_cjk(s):
                    out.add(s)
    pool = sorted(out)
    random.Random(seed).shuffle(pool)
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} {lang} sentences under {root}")
    return pool[:n]
