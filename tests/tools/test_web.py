"""`web_search` against local fakes of each backend's wire format, and `http_fetch` with its SSRF
corpus (private ranges, IPv6 forms, numeric IPv4 forms, redirects, names resolving to loopback):
0 escapes."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpcore2
import pytest

from loomiq.tools import ToolContext, ToolError, ToolUnavailable
from loomiq.tools.builtin import HttpFetchTool, ToolConfigError, WebSearchTool
from loomiq.tools.ssrf import AddressPolicy, GuardedBackend, check_url, classify

from .fake_web import BRAVE_KEY, TAVILY_KEY, FakeWeb, serve

CTX = ToolContext()


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with serve() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOOMIQ_SEARXNG_URL", "BRAVE_API_KEY", "TAVILY_API_KEY"):
        monkeypatch.delenv(name, raising=False)


# --- web_search -----------------------------------------------------------------------------------

async def test_unavailable_without_a_backend() -> None:
    tool = WebSearchTool.configure()
    reason = tool.unavailable_reason() or ""
    assert "LOOMIQ_SEARXNG_URL" in reason and "BRAVE_API_KEY" in reason and "TAVILY_API_KEY" in reason
    with pytest.raises(ToolUnavailable, match="no search backend"):
        await tool.run({"query": "x"}, CTX)
    assert "needs its API key in $BRAVE_API_KEY" in (WebSearchTool.configure({"backend": "brave"}).unavailable_reason()
                                                      or "")


async def test_searxng_from_the_environment(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOMIQ_SEARXNG_URL", f"{web.base}/searxng/")
    result = await WebSearchTool.configure().run({"query": "loomiq tools", "max_results": 3}, CTX)
    assert result.data["backend"] == "searxng"
    assert [r["title"] for r in result.data["results"]] == [f"SearxNG {i} for loomiq tools" for i in range(3)]
    assert result.data["results"][0] == {"title": "SearxNG 0 for loomiq tools", "url": "https://example.org/0",
                                         "snippet": "snippet 0"}
    assert result.content.startswith("1. SearxNG 0 for loomiq tools\n   https://example.org/0\n   snippet 0")
    assert web.requests[-1]["query"]["q"] == ["loomiq tools"]


async def test_brave_with_its_key(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAVE_API_KEY", BRAVE_KEY)
    tool = WebSearchTool.configure({"brave_url": f"{web.base}/res/v1/web/search"})
    result = await tool.run({"query": "q"}, CTX)
    assert result.data["backend"] == "brave" and len(result.data["results"]) == 5
    assert result.data["results"][1]["snippet"] == "desc 1"
    assert web.requests[-1]["headers"]["X-Subscription-Token"] == BRAVE_KEY
    monkeypatch.setenv("BRAVE_API_KEY", "wrong-key")
    with pytest.raises(ToolError, match="HTTP 401 \\(check the API key\\)") as err:
        await tool.run({"query": "q"}, CTX)
    assert "wrong-key" not in str(err.value)


async def test_tavily_with_its_key(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAVILY_API_KEY", TAVILY_KEY)
    tool = WebSearchTool.configure({"tavily_url": f"{web.base}/tavily/search", "max_results": 2})
    result = await tool.run({"query": "q"}, CTX)
    assert result.data["backend"] == "tavily"
    assert [r["url"] for r in result.data["results"]] == ["https://tavily.example/0", "https://tavily.example/1"]
    assert web.requests[-1]["method"] == "POST"


async def test_backend_order_and_explicit_choice(web: FakeWeb, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAVE_API_KEY", BRAVE_KEY)
    monkeypatch.setenv("TAVILY_API_KEY", TAVILY_KEY)
    assert WebSearchTool.configure().backend()[0] == "brave"  # type: ignore[index]
    assert WebSearchTool.configure({"backend": "tavily"}).backend()[0] == "tavily"  # type: ignore[index]
    assert WebSearchTool.configure({"searxng_url": web.base}).backend()[0] == "searxng"  # type: ignore[index]
    with pytest.raises(ToolConfigError, match="'backend'"):
        WebSearchTool.configure({"backend": "google"})
    with pytest.raises(ToolError, match="'query'"):
        await WebSearchTool.configure().run({"query": " "}, CTX)


# --- http_fetch -----------------------------------------------------------------------------------

LOOPBACK = {"allowed_networks": ["127.0.0.0/8", "::1/128"]}


async def test_fetch_html_as_text(web: FakeWeb) -> None:
    result = await HttpFetchTool.configure(LOOPBACK).run({"url": f"{web.base}/page.html"}, CTX)
    assert result.data["title"] == "A test & page" and result.data["status"] == 200
    assert result.data["text"] == "Heading\n\nFirst paragraph with bold text.\n\n- one\n\n- two"
    assert "secret" not in result.content and "Home" not in result.content and "footer" not in result.content
    plain = await HttpFetchTool.configure(LOOPBACK).run({"url": f"{web.base}/plain"}, CTX)
    assert plain.data["text"] == "plain text ünïcode"
    image = await HttpFetchTool.configure(LOOPBACK).run({"url": f"{web.base}/image"}, CTX)
    assert "binary content of type image/png" in image.content
    missing = await HttpFetchTool.configure(LOOPBACK).run({"url": f"{web.base}/nope"}, CTX)
    assert missing.is_error and missing.data["status"] == 404


async def test_fetch_caps(web: FakeWeb) -> None:
    big = await HttpFetchTool.configure({**LOOPBACK, "max_bytes": 1024 * 1024, "max_chars": 1000}).run(
        {"url": f"{web.base}/big"}, CTX)
    assert big.data["truncated"] and big.data["bytes"] == 1024 * 1024 and len(big.data["text"]) == 1000
    assert "[loomiq: download stopped at 1048576 bytes]" in big.content
    with pytest.raises(ToolError, match="took longer than 1 s"):
        await HttpFetchTool.configure({**LOOPBACK, "timeout_s": 1}).run({"url": f"{web.base}/slow"}, CTX)
    with pytest.raises(ToolError, match="redirected more than 3 times"):
        await HttpFetchTool.configure({**LOOPBACK, "max_redirects": 3}).run({"url": f"{web.base}/loop"}, CTX)
    with pytest.raises(ToolError, match="only http and https"):
        await HttpFetchTool.configure(LOOPBACK).run({"url": "file:///etc/passwd"}, CTX)
    with pytest.raises(ToolConfigError, match="'allowed_networks'"):
        HttpFetchTool.configure({"allowed_networks": ["not-a-net"]})


async def test_connects_to_the_checked_address_without_resolving_again(web: FakeWeb) -> None:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    tool = HttpFetchTool.configure(LOOPBACK)
    tool.resolver = resolver
    result = await tool.run({"url": f"http://fake.test:{web.port}/host"}, CTX)
    assert result.data["text"] == f"fake.test:{web.port}"  # the Host header kept the name
    assert calls == ["fake.test"]


class _Recorder(httpcore2.AsyncNetworkBackend):
    """Stands in for the real connector: records every address the guard let through, and connects
    only to the local fake server (so that no test ever sends a packet to another address)."""

    def __init__(self) -> None:
        self.connected: list[str] = []
        self._real = httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        self.connected.append(host)
        if ipaddress.ip_address(host).is_loopback:
            return await self._real.connect_tcp(host, port, timeout=timeout)
        raise httpcore2.ConnectError(f"test: no connection to {host}")

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


def ssrf_corpus(port: int) -> list[str]:
    """URLs that must be refused with the default policy (nothing but public addresses)."""
    return [
        f"http://127.0.0.1:{port}/page.html", f"http://localhost:{port}/page.html", f"http://127.1:{port}/",
        f"http://2130706433:{port}/", f"http://0177.0.0.1:{port}/", f"http://0x7f.1:{port}/",
        f"http://0x7f000001:{port}/", f"http://017700000001:{port}/", f"http://0.0.0.0:{port}/",
        f"http://[::1]:{port}/", f"http://[::ffff:127.0.0.1]:{port}/", f"http://[::ffff:7f00:1]:{port}/",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/", f"http://[::]:{port}/", f"http://[::7f00:1]:{port}/",
        f"http://[64:ff9b::7f00:1]:{port}/", f"http://[2002:7f00:1::]:{port}/",
        "http://10.0.0.1/", "http://10.255.255.254:8080/", "http://172.16.0.1/", "http://172.31.255.1/",
        "http://192.168.0.1/", "http://100.64.0.1/", "http://100.127.255.254/",
        "http://169.254.169.254/latest/meta-data/", "http://169.254.170.2/v2/credentials",
        "http://100.100.100.200/", "http://192.0.0.192/", "http://168.63.129.16/", "http://[fd00:ec2::254]/",
        "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://[fe80::1]/", "http://[fe80::1%25eth0]/",
        "http://224.0.0.1/", "http://239.255.255.250:1900/", "http://[ff02::1]/", "http://255.255.255.255/",
        "http://198.18.0.1/", "http://240.0.0.1/", "http://[::ffff:10.0.0.1]/", "http://[::ffff:169.254.169.254]/",
        "http://rebind.test/", "http://mixed.test/", "http://meta.test/",
        f"http://public.test:{port}/redirect?to=http://127.0.0.1:{port}/page.html",
        f"http://public.test:{port}/redirect?to=http://localhost:{port}/page.html",
        f"http://public.test:{port}/redirect?to=http://[::1]:{port}/page.html",
        f"http://public.test:{port}/redirect?to=http://169.254.169.254/",
        f"http://public.test:{port}/redirect?to=http://rebind.test:{port}/",
    ]


async def _stub_resolver(host: str, port: int) -> list[str]:
    names = {
        "rebind.test": ["127.0.0.1"],              # a name that resolves to loopback
        "mixed.test": ["93.184.216.34", "10.1.2.3"],  # one public, one private answer
        "meta.test": ["169.254.169.254"],
        "public.test": ["127.0.0.1"],              # stands for a public host (allowed by name below)
    }
    if host in names:
        return names[host]
    import socket

    import anyio

    return [str(i[4][0]) for i in await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


async def test_ssrf_corpus_zero_escapes(web: FakeWeb) -> None:
    # "public.test" plays a public web site that redirects: allowed by name, so only its redirects are tested.
    tool = HttpFetchTool.configure({"allowed_hosts": ["public.test"], "timeout_s": 5})
    tool.resolver = _stub_resolver
    recorder = _Recorder()
    original = GuardedBackend.__init__

    def patched(self: GuardedBackend, policy: AddressPolicy, resolver: Any = None) -> None:
        original(self, policy, resolver)
        self._inner = recorder  # type: ignore[assignment]

    GuardedBackend.__init__ = patched  # type: ignore[method-assign]
    escapes: list[str] = []
    try:
        for url in ssrf_corpus(web.port):
            before = len(recorder.connected)
            with pytest.raises(ToolError) as err:
                await tool.run({"url": url}, CTX)
            reached = recorder.connected[before:]
            # Only the allowed first hop of a redirect case may connect; nothing else ever does.
            if reached[url.startswith("http://public.test"):]:
                escapes.append(f"{url} -> {reached}")
            assert "refused" in str(err.value) or "cannot resolve" in str(err.value) or "failed" in str(err.value)
    finally:
        GuardedBackend.__init__ = original  # type: ignore[method-assign]
    assert escapes == []
    # Nothing was ever fetched from the fake server but the redirects themselves.
    assert {r["path"] for r in web.requests} <= {"/redirect"}


def test_classify() -> None:
    assert classify(ipaddress.ip_address("8.8.8.8")) is None
    assert classify(ipaddress.ip_address("2606:4700::1111")) is None
    assert classify(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert classify(ipaddress.ip_address("::ffff:192.168.1.1")) == "private (embedded in ::ffff:c0a8:101)"
    assert classify(ipaddress.ip_address("100.64.1.1")) == "CGNAT (shared address space)"
    assert classify(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"
    assert classify(ipaddress.ip_address("fe80::1")) == "link-local"
    assert classify(ipaddress.ip_address("ff02::1")) == "multicast"


async def test_check_url_for_stored_urls() -> None:
    with pytest.raises(ValueError, match="scheme 'ftp'"):
        await check_url("ftp://example.com/")
    with pytest.raises(Exception, match="loopback"):
        await check_url("http://127.0.0.1:11434/v1")
    policy = AddressPolicy.from_strings(allowed_hosts=["localhost"])
    assert all(a.is_loopback for a in await check_url("http://localhost:11434/v1", policy))
    with pytest.raises(Exception, match="cloud metadata"):
        await check_url("http://169.254.169.254/", AddressPolicy.from_strings(["169.254.0.0/16"]))
