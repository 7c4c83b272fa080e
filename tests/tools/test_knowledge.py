"""The knowledge base on SQLite and PostgreSQL: ingestion of text, Markdown, HTML and PDF, chunks
with overlap, BM25 / full-text ranking, tenants and collections kept apart, removal, the tool and
the `loomiq kb` commands."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loomiq.tools import Footprint, ToolContext, ToolError
from loomiq.tools.builtin import KnowledgeBase, KnowledgeError, KnowledgeTool
from loomiq.tools.builtin._chunking import chunk_text, guess_kind, markdown_title

from ..cli.conftest import cli
from ..engine.conftest import database

DOCS = {
    "rotation.md": "# Key rotation\n\nRotate the signing keys every ninety days with `loomiq keys create`.\n\n"
                   "## Revocation\n\nA revoked key stops working at once, on every server.",
    "backup.html": "<html><head><title>Backups</title><script>var rotate='keys'</script></head><body>"
                   "<nav>menu</nav><p>The database backup runs nightly; restores are tested weekly.</p></body></html>",
    "notes.txt": "Lunch is at noon. The coffee machine is on the second floor.",
}


def make_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (Helvetica), with a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(params=["sqlite", "postgresql"])
async def kb(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KnowledgeBase]:
    async with database(request.param, tmp_path) as url:
        base = await KnowledgeBase.open(url, chunk_chars=200, overlap_chars=50)
        try:
            yield base
        finally:
            await base.close()


def test_chunks_overlap_and_cover_the_text() -> None:
    text = " ".join(f"word{i}." for i in range(400))
    chunks = chunk_text(text, size=200, overlap=50)
    assert all(len(c.text) <= 200 for c in chunks) and len(chunks) > 10
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end  # overlap
        assert text[a.start:a.end].strip() == a.text
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert chunk_text("") == [] and [c.text for c in chunk_text("short")] == ["short"]
    with pytest.raises(ValueError):
        chunk_text("x", size=10, overlap=10)
    assert markdown_title("intro\n## Second\n# First") == "Second"
    assert guess_kind("a.PDF", b"") == "pdf" and guess_kind("x", b"<!DOCTYPE html><p>") == "html"


async def test_add_search_list_remove(kb: KnowledgeBase, tmp_path: Path) -> None:
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "manual.pdf").write_bytes(make_pdf("The reactor cooling pump must be inspected monthly"))
    docs = {Path(d.source).name: d for d in [await kb.add_file("acme", tmp_path / n) for n in
                                              [*DOCS, "manual.pdf"]]}
    assert {n: d.kind for n, d in docs.items()} == {"rotation.md": "markdown", "backup.html": "html",
                                                   "notes.txt": "text", "manual.pdf": "pdf"}
    assert docs["rotation.md"].title == "Key rotation" and docs["backup.html"].title == "Backups"
    hits = await kb.search("acme", "how do I rotate signing keys?")
    assert hits[0].document_id == docs["rotation.md"].id and hits[0].chunk_id == f"{docs['rotation.md'].id}#0"
    assert "backup.html" not in [Path(h.source).name for h in hits]  # the script's words are not text
    assert hits[0].score > 0 and hits[0].source.endswith("rotation.md") and hits[0].title == "Key rotation"
    pdf_hits = await kb.search("acme", "cooling pump inspection")
    assert pdf_hits[0].document_id == docs["manual.pdf"].id
    assert [d.id for d in await kb.documents("acme")] == [d.id for d in reversed(list(docs.values()))]
    # The same text again is the same document.
    again = await kb.add_file("acme", tmp_path / "rotation.md")
    assert again.id == docs["rotation.md"].id and len(await kb.documents("acme")) == 4
    assert await kb.remove("acme", docs["rotation.md"].id) is True
    assert await kb.remove("acme", docs["rotation.md"].id) is False
    assert [h.document_id for h in await kb.search("acme", "rotate signing keys revoked")] == []


async def test_tenants_and_collections_are_apart(kb: KnowledgeBase) -> None:
    a = await kb.add("acme", "a.txt", "Quarterly revenue grew in the northern region.")
    await kb.add("other", "b.txt", "Quarterly revenue fell in the southern region.")
    c = await kb.add("acme", "c.txt", "Revenue forecasts for next year.", collection="finance")
    assert {h.document_id for h in await kb.search("acme", "revenue")} == {a.id, c.id}
    assert [h.document_id for h in await kb.search("acme", "revenue", collection="finance")] == [c.id]
    assert [h.text for h in await kb.search("other", "revenue")] == ["Quarterly revenue fell in the southern region."]
    assert await kb.remove("other", a.id) is False and await kb.get("acme", a.id) is not None
    assert [d.id for d in await kb.documents("acme", collection="default")] == [a.id]


async def test_long_documents_are_chunked_and_queries_are_not_syntax(kb: KnowledgeBase) -> None:
    body = "\n\n".join(f"Section {i}. " + "filler text " * 20 + ("zebra migration" if i == 7 else "")
                       for i in range(12))
    doc = await kb.add("acme", "long.md", body, kind="markdown")
    assert doc.chunks > 10
    hits = await kb.search("acme", "zebra")
    assert hits and "zebra" in hits[0].text and hits[0].document_id == doc.id
    assert body[hits[0].start:hits[0].end].strip() == hits[0].text
    for query in ['"unbalanced', "NEAR(zebra", "zebra*", "-zebra", "text:zebra", "zebra OR AND NOT", "'; DROP", "ü",
                  ""]:
        await kb.search("acme", query)  # never a syntax error
    with pytest.raises(KnowledgeError, match="tenant"):
        await kb.search("../x", "zebra")
    with pytest.raises(KnowledgeError, match="no text"):
        await kb.add("acme", "empty.txt", "   ")
    with pytest.raises(KnowledgeError, match="cannot read it as pdf"):
        await kb.add("acme", "broken.pdf", b"%PDF-1.4 garbage")


async def test_knowledge_tool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loomiq.db'}"
    tool = KnowledgeTool.configure({"database_url": url})
    ctx = ToolContext(tenant_id="acme")
    assert tool.footprint({"op": "search", "query": "x"}) == Footprint(reads=frozenset({"kb:default"}))
    assert tool.footprint({"op": "add", "collection": "docs"}) == Footprint(writes=frozenset({"kb:docs"}))
    added = await tool.run({"op": "add", "text": "# Runbook\n\nRestart the worker with loomiq worker.",
                            "source": "runbook"}, ctx)
    assert added.data["title"] == "Runbook"
    found = await tool.run({"query": "restart worker"}, ctx)
    assert found.data["hits"][0]["chunk_id"] == f"{added.data['id']}#0"
    assert found.content.startswith(f"[{added.data['id']}#0] Runbook (runbook)")
    assert "nothing in the knowledge base" in (await tool.run({"query": "restart"}, ToolContext(tenant_id="b"))).content
    with pytest.raises(ToolError, match="'query'"):
        await tool.run({"op": "search"}, ctx)
    await tool.aclose()
    # The knowledge base lives in the same database file, beside the engine's tables, in its own.
    with sqlite3.connect(tmp_path / "loomiq.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"kb_documents", "kb_chunks", "kb_schema_migrations"} <= tables


def test_kb_commands(tmp_path: Path) -> None:
    (tmp_path / "rotation.md").write_text(DOCS["rotation.md"])
    (tmp_path / "backup.html").write_text(DOCS["backup.html"])
    env = {"LOOMIQ_DATABASE_URL": f"sqlite:///{tmp_path / 'loomiq.db'}"}
    added = cli("kb", "add", str(tmp_path / "rotation.md"), str(tmp_path / "backup.html"), "--tenant", "acme",
                "--json", **env)
    assert added.returncode == 0, added.stderr
    ids = [d["id"] for d in json.loads(added.stdout)]
    found = cli("kb", "search", "nightly backup", "--tenant", "acme", "--json", **env)
    assert found.returncode == 0 and json.loads(found.stdout)[0]["document_id"] == ids[1]
    human = cli("kb", "search", "rotate keys", "--tenant", "acme", **env)
    assert human.stdout.startswith(f"[{ids[0]}#0]")
    listed = cli("kb", "list", "--tenant", "acme", "--json", **env)
    assert sorted(d["id"] for d in json.loads(listed.stdout)) == sorted(ids)
    assert "has no documents" in cli("kb", "list", **env).stdout  # another tenant
    assert cli("kb", "remove", ids[0], "--tenant", "acme", **env).stdout.strip() == f"removed {ids[0]}"
    missing = cli("kb", "remove", ids[0], "--tenant", "acme", **env)
    assert missing.returncode == 1 and missing.stderr.startswith("loomiq: error: tenant acme has no document")
    bad = cli("kb", "add", str(tmp_path / "nope.pdf"), **env)
    assert bad.returncode == 2 and bad.stderr == f"loomiq: error: {tmp_path / 'nope.pdf'}: no such file\n"


async def test_words_in_most_chunks_are_stop_words_on_a_large_sqlite_base(tmp_path: Path) -> None:
    kb = await KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.db'}", chunk_chars=60, overlap_chars=0)
    try:
        lines = [f"the common report number {i} lists figures." for i in range(1500)]
        lines[700] = "the common report about a rare walrus sighting."
        lines[900] = "a walrus again, seen near the common harbour."
        await kb.add("acme", "big.txt", "\n\n".join(lines))
        hits = await kb.search("acme", "common walrus", limit=5)
        # "common" is in every chunk: a stop word here; the walrus chunks are found and ranked first.
        assert sorted(h.text for h in hits) == sorted([lines[700], lines[900]])
        only_common = await kb.search("acme", "common report", limit=3)
        assert len(only_common) == 3 and all("common" in h.text for h in only_common)
    finally:
        await kb.close()


async def test_a_tenant_finds_its_own_matches_when_another_tenants_rank_higher(tmp_path: Path) -> None:
    # SQLite tries the whole file's best matches first; another tenant's better matches must send it
    # to the scoped query, on every search (the first, and the ones after it found the file mixed).
    kb = await KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.db'}")
    try:
        for i in range(6):
            await kb.add("loud", f"loud{i}.txt", f"zebra zebra zebra zebra stripes {i}")
        await kb.add("quiet", "quiet.txt", "a zebra among many other animals in the long grass of the plain")
        await kb.add("quiet", "other.txt", "zebra crossing", collection="roads")
        for _ in range(2):
            hits = await kb.search("quiet", "zebra", limit=2)
            assert sorted(h.source for h in hits) == ["other.txt", "quiet.txt"]
            roads = await kb.search("quiet", "zebra", limit=1, collection="roads")
            assert [h.source for h in roads] == ["other.txt"]
        alone = await KnowledgeBase.open(f"sqlite:///{tmp_path / 'alone.db'}")
        try:
            await alone.add("solo", "a.txt", "zebra one")
            await alone.add("solo", "b.txt", "zebra zebra two")
            assert [h.source for h in await alone.search("solo", "zebra", limit=5)] == ["b.txt", "a.txt"]
            assert await alone.search("nobody", "zebra") == []
        finally:
            await alone.close()
    finally:
        await kb.close()
