"""Issue 10 item 4 (class: model output reaches the terminal raw): every terminal control sequence in
text from a model, a tool or an agent is neutralised before the CLI shows it, and `loomiq run`,
`loomiq run --durable` and `loomiq wait` show a run through the one display."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import fields
from pathlib import Path
from typing import Any, get_args

import pytest

from loomiq.cli._display import EventPrinter, finish_lines, summary_rows
from loomiq.cli._terminal import safe, safe_line
from loomiq.models import Usage
from loomiq.runtime import Event, RunResult, StepResult
from loomiq.tools import ToolCallRecord

from .conftest import PROMPT, cli

ESC, BEL, ST = "\x1b", "\x07", "\x1b\\"
CORPUS = {
    "OSC title (BEL)": f"{ESC}]0;pwned title{BEL}",
    "OSC title (ST)": f"{ESC}]2;pwned title{ST}",
    "OSC 8 hyperlink": f"{ESC}]8;;https://evil.example/{ST}click me{ESC}]8;;{ST}",
    "OSC 52 clipboard": f"{ESC}]52;c;cm0gLXJmIH4={BEL}",
    "8-bit OSC": f"\x9d0;pwned{BEL}",
    "CSI colour": f"{ESC}[31;1mred{ESC}[0m",
    "CSI clear screen and home": f"{ESC}[2J{ESC}[H",
    "CSI private mode (hide cursor)": f"{ESC}[?25l",
    "8-bit CSI": "\x9b31m",
    "DCS": f"{ESC}P1$r0m{ST}",
    "8-bit DCS": "\x90q#0;2;0;0;0\x9c",
    "APC": f"{ESC}_Gf=100;payload{ST}",
    "PM": f"{ESC}^private{ST}",
    "SOS": f"{ESC}Xstring{ST}",
    "RIS reset": f"{ESC}c",
    "charset designation": f"{ESC}(0",
    "bare ESC": ESC,
    "unterminated OSC": f"{ESC}]0;no end",
    "C1 NEL and friends": "\x85\x84\x8d",
    "carriage return": "\roverwritten",
    "backspace": "abc\b\b\b",
    "bell": BEL,
    "NUL and other C0": "\x00\x01\x0b\x0c\x1a\x1f",
    "DEL": "\x7f",
}
PRINTABLE = "naïve café 中文 עברית 🙂 tab\there"

_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def assert_clean(text: str) -> None:
    """No ESC, no C1, no C0 control but line feed and tab."""
    found = _FORBIDDEN.search(text)
    assert found is None, f"control {found.group()!r} at {found.start()} in {text!r}"


@pytest.mark.parametrize("sequence", list(CORPUS.values()), ids=list(CORPUS))
def test_every_sequence_is_neutralised(sequence: str) -> None:
    text = f"before {sequence}\nafter\n{PRINTABLE}"  # (a line feed ends no sequence: ESC SP a would be one)
    out = safe(text)
    assert_clean(out)
    assert out.startswith("before ") and out.endswith(f"\nafter\n{PRINTABLE}")
    assert "\n" not in safe_line(text) and "\t" not in safe_line(text)
    assert safe(PRINTABLE) == PRINTABLE  # printable Unicode, line feeds and tabs are kept


HOSTILE = "x" + "".join(CORPUS.values()) + "y"


def _hostile(annotation: str) -> Any:
    step = StepResult(HOSTILE, HOSTILE, HOSTILE, HOSTILE, Usage(1, 2), 0.1, 5.0, HOSTILE,
                      failed_over_from=((HOSTILE, HOSTILE),), model=HOSTILE)
    record = ToolCallRecord(HOSTILE, 0, 0, HOSTILE, HOSTILE, {HOSTILE: HOSTILE}, "finished", HOSTILE, HOSTILE)
    result = RunResult(task_id=HOSTILE, status="failed", strategy=HOSTILE, output=HOSTILE, steps=(step,),
                       usage=Usage(1, 2), cost_usd=0.1, duration_ms=5.0, offline=False, strategy_reason=HOSTILE,
                       error=HOSTILE, notes=(HOSTILE,))
    return {
        "str": HOSTILE, "str | None": HOSTILE, "int": 2, "float": 1.5, "bool": False,
        "tuple[str, ...]": (HOSTILE, HOSTILE), "tuple[int, ...]": (0, 1), "dict[str, int]": {"total_tokens": 3},
        "dict[str, Any]": {HOSTILE: HOSTILE}, "StepResult": step, "RunResult": result, "ToolCallRecord": record,
        "int | None": 1, "float | None": 2.5, "str | int": HOSTILE, "dict[str, Any] | None": {HOSTILE: [HOSTILE]},
    }[annotation]


@pytest.mark.parametrize("cls", get_args(Event), ids=lambda c: c.__name__)
def test_the_display_neutralises_every_text_of_every_event(cls: type[Any]) -> None:
    """Every event type, with every text field hostile: the display's lines are clean."""
    event = cls(**{f.name: _hostile(str(f.type)) for f in fields(cls) if f.name != "type"})
    lines: list[str] = []
    printer = EventPrinter(lines.append, lifecycle=True)
    printer(event)
    for line in lines:
        assert_clean(line)
    if printer.result is not None:
        for line in finish_lines(printer.result, None):
            assert_clean(line)
        for _, value in summary_rows(printer.result):
            assert_clean(value)


def _config(directory: Path, reply: str) -> None:
    agents = "".join(f"""\
  - id: {ident}
    provider: scripted
    model: scripted
    capabilities: [analysis, general, synthesis]
    scripted: {{replies: [{json.dumps(reply)}, {json.dumps(reply)}]}}
""" for ident in ("ana", "lead"))
    (directory / "loomiq.yaml").write_text(textwrap.dedent("agents:\n" + agents), encoding="utf-8")


def test_loomiq_run_durable_and_wait_show_no_control_sequence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scripted model that answers with every sequence of the corpus, through `loomiq run` (plain),
    `loomiq run --durable` and `loomiq wait`: nothing of it reaches stdout, and the three show the
    same run the same way (wait adds the task's queue events and its own rows)."""
    monkeypatch.chdir(tmp_path)
    reply = "answer: " + " | ".join(f"{name}={seq}" for name, seq in CORPUS.items()) + " | end"
    _config(tmp_path, reply)
    runs = {}
    for mode in ("in-process", "durable"):
        args = ("run", PROMPT, "--strategy", "sequential", *(("--durable",) if mode == "durable" else ()))
        proc = cli(*args)
        assert proc.returncode == 0, (mode, proc.stdout, proc.stderr)
        assert_clean(proc.stdout)
        assert_clean(proc.stderr)
        assert "answer: OSC title (BEL)= | " in proc.stdout and " | end" in proc.stdout
        runs[mode] = proc.stdout.splitlines()
    durable = runs["durable"]
    assert durable[0].startswith("task: ")
    task_id = durable[0].split()[1]
    waited = cli("wait", task_id)
    assert waited.returncode == 0, waited.stderr
    assert_clean(waited.stdout)
    lines = waited.stdout.splitlines()
    assert lines[0] == "queued (priority medium)" and lines[1].startswith("started: attempt 1 on worker ")
    assert lines[-3:] == [f"task:     {task_id}", "tenant:   default", "attempts: 1"]
    assert lines[2:-3] == durable[1:]  # the same run, shown the same way

    def masked(lines: list[str]) -> list[str]:  # another run: its figures differ, and the offline
        return [re.sub(r"\d[\d,.]*", "N", line) for line in lines if not line.startswith("offline: ")]

    assert masked(runs["in-process"]) == masked(durable[1:])
