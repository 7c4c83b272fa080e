"""Models: the `ChatModel` protocol, its data types, errors, and the provider adapters.

Adapters: `openai_compat.OpenAIChatModel` (OpenAI and every OpenAI-compatible server),
`anthropic.AnthropicChatModel` (Anthropic Messages), and `scripted.ScriptedModel` (offline).
"""

from ._guard import allow_model_requests, model_requests_allowed, set_model_requests_allowed
from ._types import (
    FinishReason,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamPart,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
)
from .base import ChatModel, unsupported_settings
from .errors import (
    AuthenticationFailed,
    BadRequest,
    EmptyAnswer,
    MalformedResponse,
    ModelError,
    ModelRequestsForbidden,
    ModelTimeout,
    ProviderUnavailable,
    RateLimited,
)
from .pricing import Pricing
from .providers import PROVIDERS, ModelSpec, create_model
from .scripted import ScriptedModel, ScriptedReply

__all__ = [
    "PROVIDERS",
    "AuthenticationFailed",
    "BadRequest",
    "ChatModel",
    "EmptyAnswer",
    "FinishReason",
    "MalformedResponse",
    "Message",
    "ModelError",
    "ModelRequest",
    "ModelRequestsForbidden",
    "ModelResponse",
    "ModelSettings",
    "ModelSpec",
    "ModelTimeout",
    "Pricing",
    "ProviderUnavailable",
    "RateLimited",
    "ScriptedModel",
    "ScriptedReply",
    "StreamPart",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "allow_model_requests",
    "create_model",
    "model_requests_allowed",
    "set_model_requests_allowed",
    "unsupported_settings",
]
