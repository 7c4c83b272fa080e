"""OAuth for streamable-HTTP MCP servers that require it (the MCP authorization spec): the SDK's
`OAuthClientProvider` does discovery, registration (dynamic, a client-metadata URL, or a
pre-registered client), PKCE, the token exchange and refreshes; loomiq gives it a token store and
an `Authorizer` for the one interactive step, the user's consent in a browser.

Tokens persist per server in a JSON file (mode 0600) under `token_dir()` (``$LOOMIQ_MCP_TOKEN_DIR``,
default ``~/.local/share/loomiq/mcp-oauth``), so consent is given once, with ``loomiq mcp login
NAME``, and runs afterwards refresh silently. A run that would need consent again fails with an
error that says to log in, instead of waiting for a browser nobody watches (`NoConsent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from .spec import OAuthSpec

TOKEN_DIR_ENV = "LOOMIQ_MCP_TOKEN_DIR"


def token_dir() -> Path:
    """Where OAuth tokens of MCP servers are kept."""
    configured = os.environ.get(TOKEN_DIR_ENV)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "loomiq" / "mcp-oauth"


class Authorizer(Protocol):
    """The interactive step: send the user to `url`, then hand back the code it redirected with."""

    async def redirect(self, url: str) -> None:
        """Show or open the authorization URL."""
        ...

    async def callback(self) -> AuthorizationCodeResult:
        """The code (and state, iss) the authorization server redirected back with."""
        ...


class ConsentNeeded(Exception):
    """The server needs the user's consent, and nobody is there to give it (a run, not a login)."""


class NoConsent:
    """The `Authorizer` of runs: asking for consent fails, naming the command that gives it."""

    def __init__(self, server: str) -> None:
        self.server = server

    def _refusal(self) -> ConsentNeeded:
        login = f"loomiq mcp login {self.server}"
        return ConsentNeeded(f"MCP server {self.server!r} needs authorization: run `{login}` once")

    async def redirect(self, url: str) -> None:
        """Refuse: there is no browser in a run."""
        raise self._refusal()

    async def callback(self) -> AuthorizationCodeResult:
        """Never reached (`redirect` refused)."""
        raise self._refusal()


class FollowRedirect:
    """An `Authorizer` for servers that consent without a person (test servers, and the conformance
    suite's): fetch the authorization URL and take the code from the redirect it answers with."""

    def __init__(self) -> None:
        self._result: AuthorizationCodeResult | None = None

    async def redirect(self, url: str) -> None:
        """Fetch `url` without following redirects; keep the code of its Location."""
        import httpx2

        async with httpx2.AsyncClient(timeout=30) as http:
            response = await http.get(url, follow_redirects=False)
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise ConsentNeeded(f"the authorization server answered {response.status_code} without a redirect")
        self._result = _code_from(location)

    async def callback(self) -> AuthorizationCodeResult:
        """The code kept by `redirect`."""
        if self._result is None:
            raise ConsentNeeded("no authorization code was received")
        result, self._result = self._result, None
        return result


class BrowserConsent:
    """The `Authorizer` of ``loomiq mcp login``: print the URL (and try to open a browser), then wait
    on the redirect URI's port for the browser to come back with the code."""

    def __init__(self, redirect_uri: str, print_url: object = print, timeout_s: float = 300.0) -> None:
        self.redirect_uri = redirect_uri
        self.print_url = print_url
        self.timeout_s = timeout_s
        self._server: asyncio.Server | None = None
        self._code: asyncio.Future[AuthorizationCodeResult] | None = None

    async def redirect(self, url: str) -> None:
        """Listen on the redirect URI, then show the URL."""
        parsed = urlparse(self.redirect_uri)
        loop = asyncio.get_running_loop()
        self._code = loop.create_future()
        code = self._code

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            request_line = (await reader.readline()).decode("latin-1")
            path = request_line.split(" ")[1] if " " in request_line else "/"
            body = b"loomiq: authorized; you can close this window."
            try:
                result = _code_from(path)
            except ConsentNeeded as exc:
                body = f"loomiq: {exc}".encode()
                if not code.done():
                    code.set_exception(exc)
            else:
                if not code.done():
                    code.set_result(result)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
            with contextlib.suppress(OSError):
                await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(on_connection, parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.print_url(url)  # type: ignore[operator]
        with contextlib.suppress(Exception):
            import webbrowser

            webbrowser.open(url)

    async def callback(self) -> AuthorizationCodeResult:
        """Wait for the browser's redirect (`timeout_s` at most)."""
        assert self._code is not None and self._server is not None
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._code
        finally:
            self._server.close()


def _code_from(location: str) -> AuthorizationCodeResult:
    query = parse_qs(urlparse(location).query)
    if "error" in query:
        raise ConsentNeeded(f"authorization refused: {query['error'][0]} {query.get('error_description', [''])[0]}")
    if "code" not in query:
        raise ConsentNeeded(f"no authorization code in the redirect to {urlparse(location).path}")
    return AuthorizationCodeResult(code=query["code"][0], state=_first(query, "state"), iss=_first(query, "iss"))


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class FileTokenStorage:
    """The SDK's `TokenStorage` in one JSON file per server (mode 0600): tokens and the registered
    client. `client` seeds a pre-registered client when the file has none."""

    def __init__(self, path: Path, client: OAuthClientInformationFull | None = None) -> None:
        self.path = path
        self.client = client

    def _read(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, object]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)

    async def get_tokens(self) -> OAuthToken | None:
        """The stored tokens, if any."""
        raw = self._read().get("tokens")
        return OAuthToken.model_validate(raw) if raw else None

    async def set_tokens(self, tokens: OAuthToken) -> None:
        """Store new tokens."""
        data = self._read()
        data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self._write(data)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        """The registered client: stored, else the pre-registered one."""
        raw = self._read().get("client")
        return OAuthClientInformationFull.model_validate(raw) if raw else self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """Store the registered client."""
        data = self._read()
        data["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._write(data)


def provider(server: str, url: str, spec: OAuthSpec, authorizer: Authorizer,
             directory: Path | None = None) -> OAuthClientProvider:
    """The SDK's OAuth provider for server `server` at `url` (an httpx2 ``auth``)."""
    secret = spec.client_secret.resolve(server, "oauth.client_secret") if spec.client_secret else None
    preregistered = None
    if spec.client_id:
        preregistered = OAuthClientInformationFull(
            client_id=spec.client_id, client_secret=secret, redirect_uris=[spec.redirect_uri],  # type: ignore[list-item]
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
        )
    storage = FileTokenStorage((directory or token_dir()) / f"{server}.json", preregistered)
    metadata = OAuthClientMetadata(
        client_name="loomiq", redirect_uris=[spec.redirect_uri],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"], response_types=["code"], scope=spec.scope,
    )
    return OAuthClientProvider(server_url=url, client_metadata=metadata, storage=storage,
                               redirect_handler=authorizer.redirect, callback_handler=authorizer.callback,
                               client_metadata_url=spec.client_metadata_url)
