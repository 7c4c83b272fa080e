"""Text out of documents, for the knowledge base and `http_fetch`: HTML (the standard library's
parser: scripts, styles and page furniture dropped, blocks on their own lines), PDF (``pypdf``),
Markdown and plain text as they are.
"""

from __future__ import annotations

import html
import io
import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object", "canvas", "math",
         "nav", "footer", "aside", "form", "button", "select"}
_BLOCK = {"p", "div", "section", "article", "main", "header", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul",
          "ol", "dl", "dt", "dd", "table", "tr", "blockquote", "pre", "figure", "figcaption", "hr", "br",
          "address", "details", "summary", "body", "html"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._skip = 0
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP and tag not in _VOID:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        if tag == "pre":
            self._pre += 1
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP and tag not in _VOID:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._skip:
            return
        self.parts.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> tuple[str, str]:
    """(title, text) of an HTML document: visible text, one block per line, blank lines collapsed."""
    parser = _TextParser()
    parser.feed(markup)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).splitlines()]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    title = " ".join(html.unescape("".join(parser.title)).split())
    return title, text


def pdf_to_text(data: bytes) -> str:
    """The text of a PDF's pages, one page after the other (``pypdf``)."""
    from pypdf import PdfReader  # imported on use: only PDF ingestion needs it

    reader = PdfReader(io.BytesIO(data))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    return "\n\n".join(p for p in pages if p)


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Bytes as text: the given charset, else UTF-8 (with a BOM or not), else Latin-1."""
    for encoding in filter(None, (charset, "utf-8-sig")):
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


__all__ = ["decode_text", "html_to_text", "pdf_to_text"]
