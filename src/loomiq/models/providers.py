"""Which providers loomiq knows, and how to build a configured `ChatModel` for one.

This module holds credentials and endpoints; the adapters (`openai_compat`, `anthropic`) only speak
the wire. Adapters are imported lazily so that an offline run never imports a vendor SDK.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from .base import ChatModel
from .pricing import Pricing

Wire = Literal["openai", "anthropic", "scripted"]


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    """A provider's wire format, default endpoint, and the variable its key usually lives in."""

    wire: Wire
    base_url: str | None
    key_env: str | None
    needs_key: bool
    price_id: str | None = None
    """Provider id in the genai-prices table."""
    local: bool = False
    """A server on the user's own machine: free unless the agent sets prices."""
    needs_base_url: bool = False
    """No default endpoint: the agent must say where the server is."""


PROVIDERS: dict[str, ProviderPreset] = {
    "openai": ProviderPreset("openai", None, "OPENAI_API_KEY", True, "openai"),
    "openai-compatible": ProviderPreset("openai", None, None, False, needs_base_url=True),
    "groq": ProviderPreset("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY", True, "groq"),
    "mistral": ProviderPreset("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY", True, "mistral"),
    "openrouter": ProviderPreset(
        "openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY", True, "openrouter"
    ),
    "together": ProviderPreset("openai", "https://api.together.xyz/v1", "TOGETHER_API_KEY", True, "together"),
    "deepseek": ProviderPreset("openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", True, "deepseek"),
    "ollama": ProviderPreset("openai", "http://127.0.0.1:11434/v1", None, False, local=True),
    "vllm": ProviderPreset("openai", "http://127.0.0.1:8000/v1", None, False, local=True),
    "llamacpp": ProviderPreset("openai", "http://127.0.0.1:8080/v1", None, False, local=True),
    "anthropic": ProviderPreset("anthropic", None, "ANTHROPIC_API_KEY", True, "anthropic"),
    "scripted": ProviderPreset("scripted", None, None, False),
}

#: Variables that point a keyless local provider somewhere other than its default port.
BASE_URL_ENV = {"ollama": "OLLAMA_BASE_URL", "vllm": "VLLM_BASE_URL", "llamacpp": "LLAMACPP_BASE_URL"}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything needed to build one agent's model. `api_key` is resolved from the environment."""

    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = None
    pricing: Pricing | None = None
    scripted: dict[str, Any] | None = None
    """Options for the scripted model (replies, latency_s, failures, persona)."""


def resolve_base_url(provider: str, base_url: str | None) -> str | None:
    """The configured base URL, else the provider's variable (e.g. OLLAMA_BASE_URL), else its default."""
    if base_url:
        return base_url
    env = BASE_URL_ENV.get(provider)
    if env and os.environ.get(env):
        url = os.environ[env].rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"
    return PROVIDERS[provider].base_url


def create_model(spec: ModelSpec) -> ChatModel:
    """Build the `ChatModel` for `spec`. Raises `KeyError` for an unknown provider."""
    preset = PROVIDERS[spec.provider]
    if spec.pricing is not None:
        pricing = spec.pricing
    elif preset.local:
        pricing = Pricing(0.0, 0.0)
    else:
        pricing = Pricing(model=spec.model, provider=preset.price_id)
    if preset.wire == "scripted":
        from .scripted import ScriptedModel

        opts = dict(spec.scripted or {})
        return ScriptedModel(model_name=spec.model, pricing=spec.pricing or Pricing(0.0, 0.0), **opts)
    base_url = resolve_base_url(spec.provider, spec.base_url)
    if preset.wire == "anthropic":
        from .anthropic import AnthropicChatModel

        # The Anthropic SDK appends /v1/messages itself; accept a base URL written either way.
        if base_url and base_url.rstrip("/").endswith("/v1"):
            base_url = base_url.rstrip("/").removesuffix("/v1")
        return AnthropicChatModel(
            model_name=spec.model, api_key=spec.api_key, base_url=base_url, pricing=pricing
        )
    from .openai_compat import OpenAIChatModel

    return OpenAIChatModel(
        model_name=spec.model,
        api_key=spec.api_key,
        base_url=base_url,
        provider=spec.provider,
        pricing=pricing,
    )
