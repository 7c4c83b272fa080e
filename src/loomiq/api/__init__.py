"""The HTTP service: REST under ``/api``, an OpenAI-compatible API under ``/v1``, and ``/metrics``.

`create_app(settings)` builds the FastAPI app; `serve(host, port, no_auth)` runs it with uvicorn.
`issue_token` signs JWTs and `open_key_store` manages API keys (``loomiq token``, ``loomiq keys``).
"""

from .app import create_app
from .auth import ROLES, Principal, Role, issue_token
from .keys import ApiKey, InvalidKeyRequest, KeyStore, NewApiKey, open_key_store
from .problems import PROBLEM_JSON, Problem
from .server import build_server, serve
from .settings import Settings, SettingsError

__all__ = [
    "PROBLEM_JSON",
    "ROLES",
    "ApiKey",
    "InvalidKeyRequest",
    "KeyStore",
    "NewApiKey",
    "Principal",
    "Problem",
    "Role",
    "Settings",
    "SettingsError",
    "build_server",
    "create_app",
    "issue_token",
    "open_key_store",
    "serve",
]
