"""Issue 15: every per-task structure of a long-lived service is released or bounded.

Each test drives a structure through many tasks (or calls) and checks that what it holds stays
bounded; the soak test (`tests/test_soak.py`) checks the whole service's memory.
"""

from __future__ import annotations

from loomiq.models import Message, ModelRequest, ScriptedModel


def ask(text: str) -> ModelRequest:
    return ModelRequest((Message("user", text),))


async def test_scripted_model_ledger_stays_bounded() -> None:
    # The offline agents of `loomiq serve` live as long as the process: their ledger must not keep
    # every call (each with its request) for ever.
    model = ScriptedModel(ledger_size=50)
    for i in range(500):
        await model.complete(ask(f"question {i}"))
    assert len(model.calls) == 50
    assert [c.index for c in model.calls] == list(range(450, 500))  # the latest ones
    assert model.calls_made == 500 and model.finished_calls == 500


async def test_scripted_model_default_ledger_is_bounded() -> None:
    model = ScriptedModel()
    for i in range(model.ledger_size + 10):
        await model.complete(ask(f"q{i}"))
    assert len(model.calls) == model.ledger_size
