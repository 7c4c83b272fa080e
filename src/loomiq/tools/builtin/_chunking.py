"""Splitting a document's text into overlapping chunks for the knowledge base (pure functions).

A chunk ends at the best boundary before its size limit (a blank line, else a line end, else a
sentence end, else a space); the next chunk starts `overlap` characters before that end (moved
forward to a word start), so a sentence cut by one chunk is whole in the next. Offsets are kept, so
a citation can point at the exact span of the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

_BOUNDARIES = ("\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of a document: its text and where it lies (character offsets, end excluded)."""

    seq: int
    text: str
    start: int
    end: int


def chunk_text(text: str, size: int = 1200, overlap: int = 200) -> list[Chunk]:
    """`text` cut into chunks of at most `size` characters overlapping by about `overlap`."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError("chunk size must be positive and overlap in [0, size)")
    chunks: list[Chunk] = []
    start, n = 0, len(text)
    while start < n:
        while start < n and text[start].isspace():
            start += 1
        if start >= n:
            break
        end = min(n, start + size)
        if end < n:
            window = text[start:end]
            for sep in _BOUNDARIES:
                cut = window.rfind(sep, size // 2)
                if cut > 0:
                    end = start + cut + len(sep)
                    break
        piece = text[start:end].strip()
        if piece:
            chunks.append(Chunk(len(chunks), piece, start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        # Start the overlap at a word boundary rather than mid-word.
        space = text.find(" ", nxt, end)
        start = space + 1 if 0 <= space < end and overlap else nxt
    return chunks


def markdown_title(text: str) -> str:
    """The first ``# heading`` of a Markdown text, or ``""``."""
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return match.group(1).strip() if match else ""


def guess_kind(source: str, data: bytes) -> str:
    """``pdf``, ``html``, ``markdown`` or ``text``, from the source's extension, else the content."""
    suffix = PurePath(source).suffix.lower()
    if suffix == ".pdf" or data[:5] == b"%PDF-":
        return "pdf"
    if suffix in (".html", ".htm", ".xhtml"):
        return "html"
    if suffix in (".md", ".markdown", ".mdx"):
        return "markdown"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "text"


__all__ = ["Chunk", "chunk_text", "guess_kind", "markdown_title"]
