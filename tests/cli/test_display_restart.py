"""The CLI's displays after a retried call that had streamed text: the live view keeps the answer's
text once (the void part dropped), and the line printer says the agent starts its answer again."""

from __future__ import annotations

from loomiq.cli._display import EventPrinter, LiveDisplay
from loomiq.runtime import StepDelta, StepRestarted, StepStarted


def test_the_live_view_drops_the_text_a_retry_voids() -> None:
    display = LiveDisplay(None)
    for event in (StepStarted("r", "single", "ana", "answer"), StepDelta("r", "single", "ana", "Shard by"),
                  StepDelta("r", "single", "ana", " ten"),
                  StepRestarted("r", "single", "ana", "network: connection dropped", 4),
                  StepDelta("r", "single", "ana", " tenant.")):
        display.event(event)
    (row,) = display.rows
    assert "".join(row.text) == "Shard by tenant."


def test_the_line_printer_says_the_answer_starts_again() -> None:
    lines: list[str] = []
    EventPrinter(lines.append)(StepRestarted("r", "single", "ana", "network: connection dropped", 4))
    assert lines == ["[single] ana starts its answer again: network: connection dropped"]
