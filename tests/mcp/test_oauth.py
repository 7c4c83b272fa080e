"""The pieces of loomiq's MCP OAuth that the conformance suite's auth scenarios do not isolate: the
token file, the redirect's code, the refusal in runs, elicitation answers, and `loomiq mcp login`'s
errors. (The flows themselves, discovery to refresh, run in test_conformance.py's client leg.)"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import mcp_types
import pytest
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from loomiq.tools.mcp import ConsentNeeded, FileTokenStorage, NoConsent
from loomiq.tools.mcp.connection import answer_elicitation
from loomiq.tools.mcp.oauth import _code_from

from ..cli.conftest import assert_one_line_error, cli


async def test_tokens_are_kept_in_a_private_file(tmp_path: Path) -> None:
    preregistered = OAuthClientInformationFull(client_id="pre", redirect_uris=["http://127.0.0.1:1/cb"])  # type: ignore[list-item]
    store = FileTokenStorage(tmp_path / "dir" / "gh.json", preregistered)
    assert await store.get_tokens() is None
    assert (await store.get_client_info()) == preregistered
    await store.set_tokens(OAuthToken(access_token="a", refresh_token="r", expires_in=60))
    registered = OAuthClientInformationFull(client_id="dyn", redirect_uris=["http://127.0.0.1:1/cb"])  # type: ignore[list-item]
    await store.set_client_info(registered)
    again = FileTokenStorage(tmp_path / "dir" / "gh.json")
    tokens = await again.get_tokens()
    assert tokens is not None and tokens.access_token == "a" and tokens.refresh_token == "r"
    assert (await again.get_client_info()).client_id == "dyn"  # type: ignore[union-attr]
    assert stat.S_IMODE((tmp_path / "dir" / "gh.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "dir").stat().st_mode) == 0o700


def test_the_code_comes_from_the_redirect() -> None:
    got = _code_from("http://127.0.0.1:33418/callback?code=abc&state=s1&iss=https%3A%2F%2Fas")
    assert (got.code, got.state, got.iss) == ("abc", "s1", "https://as")
    with pytest.raises(ConsentNeeded, match="authorization refused: access_denied"):
        _code_from("http://127.0.0.1/cb?error=access_denied")
    with pytest.raises(ConsentNeeded, match="no authorization code"):
        _code_from("http://127.0.0.1/cb?state=x")


async def test_runs_never_wait_for_a_browser() -> None:
    with pytest.raises(ConsentNeeded, match=r"MCP server 'gh' needs authorization: run `loomiq mcp login gh` once"):
        await NoConsent("gh").redirect("https://as.example/authorize?x=1")


def test_elicitation_forms_get_their_defaults_or_a_decline() -> None:
    with_defaults = mcp_types.ElicitRequestFormParams(message="m", requested_schema={
        "type": "object", "properties": {"name": {"type": "string", "default": "Ann"}, "n": {"type": "integer"}},
        "required": ["name"]})
    assert answer_elicitation(with_defaults) == mcp_types.ElicitResult(action="accept", content={"name": "Ann"})
    missing = mcp_types.ElicitRequestFormParams(message="m", requested_schema={
        "type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    assert answer_elicitation(missing).action == "decline"
    url = mcp_types.ElicitRequestURLParams(message="m", url="https://x/pay", elicitation_id="e1")
    assert answer_elicitation(url).action == "decline"


def test_login_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "loomiq.yaml").write_text(
        "agents: [{id: a, provider: scripted, model: s}]\nmcp_servers:\n"
        f"  - {{name: local, command: {sys.executable}}}\n"
        "  - {name: remote, url: 'https://mcp.example/mcp', oauth: {client_id: loomiq}}\n", encoding="utf-8")
    assert_one_line_error(cli("mcp", "login", "nope"), "no MCP server named 'nope'", "local, remote")
    assert_one_line_error(cli("mcp", "login", "local"), "MCP server 'local' has no 'oauth:' settings")
