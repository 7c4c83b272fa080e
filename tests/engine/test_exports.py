"""The engine's public surface: `__all__` names exactly the public names it imports."""

from __future__ import annotations

import loomiq.engine as engine


def test_all_matches_public_names() -> None:
    public = {n for n, v in vars(engine).items() if not n.startswith("_") and not isinstance(v, type(engine))}
    assert set(engine.__all__) == public
    assert engine.__all__ == sorted(engine.__all__, key=lambda n: (not n.isupper(), n))
