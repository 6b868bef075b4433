"""Debian's public-domain clip art (``apt-get install openclipart-png openclipart-svg``) as image–text pairs.

Each PNG under ``/usr/share/openclipart/png`` has an SVG twin under ``.../svg`` whose RDF metadata
holds the text: the work's own ``<dc:title>`` (a second ``<dc:title>`` inside ``<cc:Agent>`` names
the author, publisher or rights holder and is skipped), ``<dc:description>`` and keywords as
``<rdf:li>`` subjects. Splits are by image, seeded.
"""

from __future__ import annotations

import html
import logging
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

ROOT = Path("/usr/share/openclipart")
_WORK = re.compile(r"<cc:Work\b[^>]*>(.*?)</cc:Work>", re.S)
_AGENT = re.compile(r"<(dc:creator|dc:rights|dc:publisher|dc:contributor|cc:Agent)\b[^>]*>.*?</\1>", re.S)
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class ClipArt:
    """One image and its text.

    Attributes:
        png: the image file.
        category: the top-level folder (``animals``, ``food`` ...).
        title: the work's own title ("" if none).
        description: its description ("" if none).
        keywords: its subject keywords.
    """

    png: Path
    category: str
    title: str = ""
    description: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)

    @property
    def caption(self) -> str:
        """The reference text: title, plus the description when it says more."""
        t, d = self.title.strip(), self.description.strip()
        if d and d.lower() != t.lower():
            return f"{t}. {d}" if t else d
        return t

    @property
    def training_text(self) -> str:
        """Caption plus keywords: the text the LiT heads are trained on."""
        kw = ", ".join(k.replace("_", " ") for k in self.keywords)
        return f"{self.caption}. {kw}" if kw else self.caption


def _clean(s: str) -> str:
    s = html.unescape(_TAG.sub(" ", s))
    return re.sub(r"\s+", " ", s).strip()


def parse_metadata(svg_text: str) -> tuple[str, str, tuple[str, ...]]:
    """``(title, description, keywords)`` of an SVG's ``cc:Work`` (the work's own title, not an agent's)."""
    m = _WORK.search(svg_text)
    if m is None:
        return "", "", ()
    work = _AGENT.sub(" ", m.group(1))
    title = re.search(r"<dc:title\b[^>]*>(.*?)</dc:title>", work, re.S)
    desc = re.search(r"<dc:description\b[^>]*>(.*?)</dc:description>", work, re.S)
    subj = re.search(r"<dc:subject\b[^>]*>(.*?)</dc:subject>", work, re.S)
    keywords = tuple(k for k in (_clean(x) for x in re.findall(r"<rdf:li\b[^>]*>(.*?)</rdf:li>", subj.group(1), re.S)) if k) if subj else ()
    return _clean(title.group(1)) if title else "", _clean(desc.group(1)) if desc else "", keywords


def load_openclipart(root: Path | str = ROOT, *, require_title: bool = True) -> list[ClipArt]:
    """All PNGs that have an SVG twin, with their metadata, sorted by path.

    Raises:
        ValueError: the packages are not installed (``apt-get install openclipart-png openclipart-svg``).
    """
    root = Path(root)
    png_root, svg_root = root / "png", root / "svg"
    if not png_root.is_dir() or not svg_root.is_dir():
        raise ValueError(f"no clip art under {root}: install it with `apt-get install -y openclipart-png openclipart-svg`")
    items, missing = [], 0
    for png in sorted(png_root.rglob("*.png")):
        rel = png.relative_to(png_root)
        svg = svg_root / rel.with_suffix(".svg")
        if not svg.exists():
            missing += 1
            continue
        title, desc, kw = parse_metadata(svg.read_text(encoding="utf-8", errors="replace"))
        if require_title and not title:
            continue
        items.append(ClipArt(png, rel.parts[0], title, desc, kw))
    logger.info("openclipart: %d images with text (%d PNGs without an SVG twin)", len(items), missing)
    return items


def split(items: list, *, seed: int = 0, test: float = 0.1, tune: float = 0.05) -> dict[str, list]:
    """Seeded split by image into ``train``, ``tune`` and ``test`` (fractions of the items)."""
    if not (0 <= test < 1 and 0 <= tune < 1 and test + tune < 1):
        raise ValueError(f"test and tune are fractions with test + tune < 1, got test={test}, tune={tune}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_test, n_tune = round(len(items) * test), round(len(items) * tune)
    pick = lambda idx: [items[i] for i in sorted(idx)]  # noqa: E731
    return {"test": pick(order[:n_test]), "tune": pick(order[n_test : n_test + n_tune]),
            "train": pick(order[n_test + n_tune :])}


def subsets(items: list[ClipArt] | None = None, *, seed: int = 0, n_train: int = 2400, n_tune: int = 100,
            n_test: int = 250) -> dict[str, list[ClipArt]]:
    """Seeded samples of each split (the scale the bundled LiT heads and the benchmarks use on 2 CPU cores)."""
    s = split(items if items is not None else load_openclipart(), seed=seed)
    rng = random.Random(seed)
    sizes = {"test": n_test, "tune": n_tune, "train": n_train}
    out = {}
    for k in ("test", "tune", "train"):  # this order keeps the samples stable
        if sizes[k] > len(s[k]):
            raise ValueError(f"asked for {sizes[k]} {k} images but the split has {len(s[k])}")
        out[k] = rng.sample(s[k], sizes[k])
    return out
