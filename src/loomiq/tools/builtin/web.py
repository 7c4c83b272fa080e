"""The web tools: `http_fetch` (one page, through the SSRF guard) and `web_search` (a configured
search backend: SearxNG, Brave or Tavily).

`http_fetch` never reaches the deployment's own network unless its settings allow a network
(`loomiq.tools.ssrf`); downloads are capped in size and time, and HTML comes back as text.
`web_search` picks its backend from its settings, else from the environment (``LOOMIQ_SEARXNG_URL``,
``BRAVE_API_KEY``, ``TAVILY_API_KEY``, in that order), and is unavailable, saying what to set,
when there is none. The backend is the deployment's own choice, so it is not behind the SSRF guard
(a SearxNG instance usually runs on the local network).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import httpx2
from pydantic import Field, field_validator

from ..base import ToolContext, ToolError, ToolResult, ToolUnavailable
from ..ssrf import AddressPolicy, Resolver, SSRFRefused, guarded_client
from ._extract import decode_text, html_to_text, pdf_to_text
from ._settings import ConfigurableTool, ToolSettings

USER_AGENT = "loomiq-http-fetch/0.1 (+https://github.com/loomiq)"


class HttpFetchSettings(ToolSettings):
    """Settings of `http_fetch` (``tools: {http_fetch: {...}}``)."""

    timeout_s: float = Field(20.0, gt=0, le=600, description="the whole fetch, redirects included")
    max_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=1 << 30, description="largest body downloaded")
    max_chars: int = Field(50_000, ge=100, le=10_000_000, description="longest text returned")
    max_redirects: int = Field(5, ge=0, le=20)
    allowed_networks: tuple[str, ...] = Field((), description="non-public networks allowed (CIDR)")
    allowed_hosts: tuple[str, ...] = Field((), description="host names allowed whatever they resolve to")

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        AddressPolicy.from_strings(value)
        return value


class HttpFetchTool(ConfigurableTool):
    """``http_fetch``: GET one URL and return its text (HTML as text, PDF text, JSON and text as is)."""

    read_only = True

    name = "http_fetch"
    description = (
        "Fetch a web page or document by URL (http or https, GET) and return its text: HTML is reduced to "
        "its visible text, PDF to its text. Private and internal addresses are not reachable."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"url": {"type": "string", "description": "the http(s) URL to fetch"}},
        "required": ["url"],
        "additionalProperties": False,
    }
    Settings: ClassVar[type[ToolSettings]] = HttpFetchSettings
    settings: HttpFetchSettings
    resolver: Resolver | None = None
    """The name resolver (None: the system's); tests put a stub resolver here."""

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.timeout_s = self.settings.timeout_s + 5.0
        self.policy = AddressPolicy.from_strings(self.settings.allowed_networks, self.settings.allowed_hosts)

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Fetch the URL through the SSRF guard, within the size and time caps."""
        url = arguments.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ToolError("argument 'url' (an http or https URL) is required")
        url = url.strip()
        if not url.lower().startswith(("http://", "https://")):
            raise ToolError(f"only http and https URLs can be fetched, not {url[:100]!r}")
        s = self.settings
        try:
            async with asyncio.timeout(s.timeout_s):
                return await self._fetch(url)
        except SSRFRefused as exc:
            raise ToolError(f"{exc} (fetching internal addresses is not allowed)") from None
        except TimeoutError:
            raise ToolError(f"fetching {url} took longer than {s.timeout_s:g} s") from None
        except httpx2.TooManyRedirects:
            raise ToolError(f"{url} redirected more than {s.max_redirects} times") from None
        except (httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
            raise ToolError(f"fetching {url} failed: {exc}") from None

    async def _fetch(self, url: str) -> ToolResult:
        s = self.settings
        client = guarded_client(self.policy, timeout_s=s.timeout_s, max_redirects=s.max_redirects,
                                resolver=self.resolver, headers={"User-Agent": USER_AGENT})
        async with client, client.stream("GET", url) as response:
            chunks: list[bytes] = []
            size = 0
            truncated = False
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > s.max_bytes:
                    truncated = True
                    break
            body = b"".join(chunks)[: s.max_bytes]
            final_url = str(response.url)
            status = response.status_code
            ctype = response.headers.get("content-type", "")
            charset = response.charset_encoding
        kind = ctype.split(";", 1)[0].strip().lower()
        title = ""
        if kind in ("text/html", "application/xhtml+xml") or (not kind and body.lstrip()[:1] == b"<"):
            title, text = html_to_text(decode_text(body, charset))
        elif kind == "application/pdf" or body[:5] == b"%PDF-":
            text = pdf_to_text(body) if not truncated else ""
            if truncated:
                text = f"(a PDF larger than {s.max_bytes} bytes: not extracted)"
        elif kind.startswith("text/") or kind.endswith(("json", "xml", "javascript")) or not kind:
            text = decode_text(body, charset)
        else:
            text = f"(binary content of type {kind}, {len(body)} bytes: no text)"
        clipped = len(text) > s.max_chars
        text = text[: s.max_chars]
        notes = []
        if truncated:
            notes.append(f"[loomiq: download stopped at {s.max_bytes} bytes]")
        if clipped:
            notes.append(f"[loomiq: text truncated at {s.max_chars} characters]")
        header = f"{status} {final_url}" + (f"\ntitle: {title}" if title else "")
        content = "\n".join([header, "", text, *notes]).rstrip()
        return ToolResult(
            content,
            data={"url": final_url, "status": status, "content_type": kind, "title": title, "text": text,
                  "bytes": len(body), "truncated": truncated or clipped},
            is_error=status >= 400,
        )


# --- web_search ----------------------------------------------------------------------------------

SEARXNG_ENV = "LOOMIQ_SEARXNG_URL"
BRAVE_ENV = "BRAVE_API_KEY"
TAVILY_ENV = "TAVILY_API_KEY"


class WebSearchSettings(ToolSettings):
    """Settings of `web_search` (``tools: {web_search: {...}}``); keys come from the environment."""

    backend: Literal["searxng", "brave", "tavily"] | None = Field(
        None, description="which backend; default: the first configured of searxng, brave, tavily")
    searxng_url: str | None = Field(None, description=f"a SearxNG instance with JSON output (or ${SEARXNG_ENV})")
    brave_api_key_env: str = Field(BRAVE_ENV, description="the variable holding the Brave Search API key")
    tavily_api_key_env: str = Field(TAVILY_ENV, description="the variable holding the Tavily API key")
    brave_url: str = "https://api.search.brave.com/res/v1/web/search"
    tavily_url: str = "https://api.tavily.com/search"
    max_results: int = Field(5, ge=1, le=50)
    timeout_s: float = Field(15.0, gt=0, le=300)


class WebSearchTool(ConfigurableTool):
    """``web_search``: search the web through the configured backend; results with title, URL, snippet."""

    read_only = True

    name = "web_search"
    description = (
        "Search the web. Returns the top results, each with a title, a URL and a snippet; use http_fetch "
        "to read a result."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "what to search for"},
            "max_results": {"type": "integer", "minimum": 1, "maximum": 50, "description": "how many results"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }
    Settings: ClassVar[type[ToolSettings]] = WebSearchSettings
    settings: WebSearchSettings

    def __init__(self, settings: Any = None) -> None:
        super().__init__(settings)
        self.timeout_s = self.settings.timeout_s + 5.0

    def backend(self) -> tuple[str, str, str | None] | None:
        """(backend, endpoint, key) chosen from the settings and the environment, or None."""
        s = self.settings
        searxng = s.searxng_url or os.environ.get(SEARXNG_ENV)
        brave = os.environ.get(s.brave_api_key_env)
        tavily = os.environ.get(s.tavily_api_key_env)
        choices = {
            "searxng": (searxng.rstrip("/") + "/search", None) if searxng else None,
            "brave": (s.brave_url, brave) if brave else None,
            "tavily": (s.tavily_url, tavily) if tavily else None,
        }
        if s.backend is not None:
            chosen = choices[s.backend]
            return (s.backend, *chosen) if chosen else None
        for name, chosen in choices.items():
            if chosen:
                return (name, *chosen)
        return None

    def unavailable_reason(self) -> str | None:
        """What to configure when no backend is."""
        if self.backend() is not None:
            return None
        s = self.settings
        if s.backend == "searxng":
            return f"web_search: backend searxng needs searxng_url in its settings or ${SEARXNG_ENV}"
        if s.backend in ("brave", "tavily"):
            env = s.brave_api_key_env if s.backend == "brave" else s.tavily_api_key_env
            return f"web_search: backend {s.backend} needs its API key in ${env}"
        return (f"web_search has no search backend: set {SEARXNG_ENV} (a SearxNG instance with the json format "
                f"enabled), {BRAVE_ENV} or {TAVILY_ENV}, or configure tools: {{web_search: {{...}}}} in loomiq.yaml")

    async def run(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Query the backend and return its results."""
        chosen = self.backend()
        if chosen is None:
            raise ToolUnavailable(self.unavailable_reason() or "web_search has no backend")
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ToolError("argument 'query' (a non-empty string) is required")
        count = arguments.get("max_results", self.settings.max_results)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 50:
            raise ToolError("argument 'max_results' must be an integer from 1 to 50")
        name, endpoint, key = chosen
        try:
            async with httpx2.AsyncClient(timeout=self.settings.timeout_s) as client:
                results = await _BACKENDS[name](client, endpoint, key, query.strip(), count)
        except httpx2.HTTPStatusError as exc:
            code = exc.response.status_code
            hint = " (check the API key)" if code in (401, 403) else " (rate limited)" if code == 429 else ""
            raise ToolError(f"web_search ({name}) answered HTTP {code}{hint}") from None
        except httpx2.HTTPError as exc:
            raise ToolError(f"web_search ({name}) failed: {type(exc).__name__}: {exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolError(f"web_search ({name}) answered something unexpected: {exc}") from None
        results = results[:count]
        lines = [f"{i}. {r['title']}\n   {r['url']}\n   {r['snippet']}" for i, r in enumerate(results, 1)]
        content = "\n".join(lines) if lines else f"no results for {query!r}"
        return ToolResult(content, data={"backend": name, "query": query, "results": results})


def _result(title: Any, url: Any, snippet: Any) -> dict[str, str]:
    return {"title": str(title or ""), "url": str(url or ""), "snippet": " ".join(str(snippet or "").split())}


async def _searxng(client: httpx2.AsyncClient, endpoint: str, key: str | None, query: str,
                   count: int) -> list[dict[str, str]]:
    response = await client.get(endpoint, params={"q": query, "format": "json"})
    response.raise_for_status()
    return [_result(r.get("title"), r.get("url"), r.get("content")) for r in response.json()["results"]]


async def _brave(client: httpx2.AsyncClient, endpoint: str, key: str | None, query: str,
                 count: int) -> list[dict[str, str]]:
    response = await client.get(endpoint, params={"q": query, "count": count},
                                headers={"X-Subscription-Token": key or "", "Accept": "application/json"})
    response.raise_for_status()
    web = response.json().get("web") or {}
    return [_result(r.get("title"), r.get("url"), r.get("description")) for r in web.get("results", [])]


async def _tavily(client: httpx2.AsyncClient, endpoint: str, key: str | None, query: str,
                  count: int) -> list[dict[str, str]]:
    response = await client.post(endpoint, json={"query": query, "max_results": count},
                                 headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return [_result(r.get("title"), r.get("url"), r.get("content")) for r in response.json()["results"]]


_BACKENDS = {"searxng": _searxng, "brave": _brave, "tavily": _tavily}


__all__ = ["HttpFetchSettings", "HttpFetchTool", "WebSearchSettings", "WebSearchTool"]
