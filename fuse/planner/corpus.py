"""Corpora as documents of sentences: reST stripping, sentence splitting, a seeded split by document.

A corpus is a list of :class:`Document` (a name and its sentences). Plain-text and reStructuredText
files are read the same way: markup is stripped (directives, code blocks, tables, headings, role
and link syntax), paragraphs are re-joined and cut into sentences at ``.``, ``!`` or ``?`` followed
by white space and a capital letter, digit or quote.

Example:
    >>> from fuse.planner.corpus import documents_from_texts, split_documents
    >>> docs = documents_from_texts(["One idea here. A second one follows!", "Another text. It ends."])
    >>> [len(d.sentences) for d in docs]
    [2, 2]
    >>> train, val = split_documents(docs, val_fraction=0.5, seed=0)
    >>> len(train), len(val)
    (1, 1)
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(])")
_ROLE = re.compile(r":[\w:.+-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")
_SIMPLE_REF = re.compile(r"`([^`]+)`_{0,2}")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPH = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")
_FOOTNOTE = re.compile(r"\s*\[[#*\w-]*\]_")
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_.:])\1{2,}\s*$")
_BULLET = re.compile(r"^(?:[-*+•]|\d+[.)]|#\.)\s+")
_ABBREV = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|Mr|Dr|Ms|No|approx)\.$", re.IGNORECASE)


@dataclass
class Document:
    """One document of a corpus.

    Attributes:
        name: where it came from (a file path relative to the corpus root, or ``text-<i>``).
        sentences: its sentences in order, markup stripped.
    """

    name: str
    sentences: list[str]


def _inline(text: str) -> str:
    text = _LITERAL.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _SIMPLE_REF.sub(r"\1", text)
    text = _EMPH.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = text.replace("\\", "")
    return re.sub(r"\s+", " ", text).strip()


def strip_rest(text: str) -> list[str]:
    """Prose paragraphs of a reStructuredText (or plain) text, markup removed.

    Keeps unindented paragraphs and bullet items; drops directives (``.. x::`` and their indented
    bodies), literal blocks (indented text after ``::``), headings, tables and comments.

    Args:
        text: the source text.

    Returns:
        the paragraphs, each one line of plain text.
    """
    paragraphs: list[str] = []
    current: list[str] = []

    def flush():
        if current:
            para = _inline(" ".join(current))
            if para.endswith("::"):
                para = para[:-1]  # "For example::" introduces a code block; keep "For example:"
            if para:
                paragraphs.append(para)
            current.clear()

    lines = text.splitlines()
    for i, raw in enumerate(lines):
        line = raw.rstrip()
        if not line.strip():
            flush()
            continue
        if line[0].isspace():  # indented: directive bodies, code, block quotes
            flush()
            continue
        stripped = line.strip()
        nxt = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
        if stripped.startswith(".."):
            flush()
            continue
        if _ADORNMENT.match(stripped) or _ADORNMENT.match(nxt.strip() or "x"):
            flush()  # heading text or its underline/overline
            continue
        if stripped.startswith(("+-", "|", "==")) or stripped.startswith(">>>"):
            flush()
            continue
        if _BULLET.match(stripped):
            flush()
            stripped = _BULLET.sub("", stripped)
        current.append(stripped)
    flush()
    return paragraphs


def split_sentences(paragraph: str, *, min_words: int = 3, max_words: int = 80) -> list[str]:
    """Cut a paragraph into sentences.

    Args:
        paragraph: one line of plain text.
        min_words: drop fragments shorter than this (headings, labels).
        max_words: drop run-ons longer than this (usually unstripped tables).

    Returns:
        the sentences, white space normalised.
    """
    parts = _SENTENCE_END.split(paragraph.strip())
    merged: list[str] = []
    for part in parts:
        part = part.strip()
        if not part:
            continue
        if merged and _ABBREV.search(merged[-1]):
            merged[-1] = merged[-1] + " " + part
        else:
            merged.append(part)
    return [s for s in merged if min_words <= len(s.split()) <= max_words]


def document_from_text(text: str, name: str, **kwargs) -> Document:
    """Strip markup from ``text`` and split it into sentences (kwargs go to :func:`split_sentences`)."""
    sentences = [s for para in strip_rest(text) for s in split_sentences(para, **kwargs)]
    return Document(name=name, sentences=sentences)


def documents_from_texts(texts: list[str], **kwargs) -> list[Document]:
    """One :class:`Document` per text; documents with no sentence are dropped."""
    docs = [document_from_text(t, f"text-{i}", **kwargs) for i, t in enumerate(texts)]
    return [d for d in docs if d.sentences]


def load_corpus(path: str | Path, *, pattern: str = "*", max_documents: int | None = None,
                max_sentences_per_document: int | None = None, seed: int = 0) -> list[Document]:
    """Read a corpus from a file or a folder.

    A folder gives one document per file matching ``pattern`` (searched recursively, in sorted
    order). A single file is one document per block separated by a line holding only ``---``
    (or the whole file when there is none).

    Args:
        path: a text file or a folder.
        pattern: glob for files in a folder (e.g. ``"*.rst.txt"``).
        max_documents: keep a seeded random subset of this many documents (``None``: all).
        max_sentences_per_document: keep only the first sentences of each document.
        seed: seeds the document subset.

    Returns:
        the documents that hold at least one sentence.

    Raises:
        ValueError: the path does not exist, or no sentence was found.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"corpus {str(path)!r} does not exist: pass a text file or a folder of text files")
    if path.is_dir():
        files = sorted(p for p in path.rglob(pattern) if p.is_file())
        docs = [document_from_text(p.read_text(encoding="utf-8", errors="replace"), str(p.relative_to(path)))
                for p in files]
    else:
        blocks = re.split(r"^---\s*$", path.read_text(encoding="utf-8", errors="replace"), flags=re.MULTILINE)
        docs = [document_from_text(b, f"{path.name}#{i}") for i, b in enumerate(blocks)]
    docs = [d for d in docs if d.sentences]
    if max_documents is not None and len(docs) > max_documents:
        docs = sorted(random.Random(seed).sample(docs, max_documents), key=lambda d: d.name)
    if max_sentences_per_document is not None:
        docs = [Document(d.name, d.sentences[:max_sentences_per_document]) for d in docs]
    check_corpus(docs, source=str(path))
    logger.info("corpus %s: %d documents, %d sentences", path, len(docs), sum(len(d.sentences) for d in docs))
    return docs


def check_corpus(documents: list[Document], *, source: str = "corpus") -> None:
    """Raise ``ValueError`` when a corpus holds no sentence at all."""
    if not documents or not any(d.sentences for d in documents):
        raise ValueError(
            f"{source} is empty: no sentence of at least 3 words was found. Pass text with full sentences "
            "(ending in '.', '!' or '?'), one document per file or blocks separated by a '---' line."
        )


def split_documents(documents: list[Document], *, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[Document], list[Document]]:
    """Seeded train/validation split by document (no document is in both).

    Args:
        documents: the corpus.
        val_fraction: share of documents for validation, in (0, 1); at least one each side.
        seed: seeds the shuffle.

    Returns:
        ``(train, validation)``, each in the original order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    check_corpus(documents)
    if len(documents) < 2:
        raise ValueError(f"a split by document needs at least 2 documents, got {len(documents)}")
    order = list(range(len(documents)))
    random.Random(seed).shuffle(order)
    n_val = min(len(documents) - 1, max(1, round(val_fraction * len(documents))))
    val_idx = set(order[:n_val])
    train = [d for i, d in enumerate(documents) if i not in val_idx]
    val = [d for i, d in enumerate(documents) if i in val_idx]
    return train, val
