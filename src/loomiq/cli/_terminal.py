"""Text from models, tools and agents is shown to a person only after `safe` has neutralised every
terminal control sequence in it: a model's answer must not retitle the terminal, plant a hyperlink,
move the cursor, recolour the screen or talk to the terminal (DCS, APC, PM, OSC 52 clipboard...).

Removed: complete escape sequences (CSI ``ESC [``, OSC ``ESC ]`` up to BEL or ST, DCS ``ESC P``,
SOS ``ESC X``, PM ``ESC ^``, APC ``ESC _`` up to ST, two- and three-byte ``ESC`` sequences), their
8-bit C1 forms, every other C1 control, a bare ESC (what an unterminated sequence leaves is then
plain text), DEL, and every C0 control but line feed and tab (carriage return, backspace and bell
included). Printable Unicode stays as it is."""

from __future__ import annotations

import re

_ST = r"(?:\x1b\\|\x9c)"
_SEQUENCES = re.compile("|".join((
    r"(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|" + _ST + ")",  # OSC ... BEL or ST
    r"(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*" + _ST,  # DCS, SOS, PM, APC ... ST
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]",  # CSI
    r"\x1b[\x20-\x2f]*[\x30-\x7e]",  # other escape sequences (charset, keypad, RIS...)
)))
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: str) -> str:
    """`text` with every terminal control sequence and control character removed (but ``\\n`` and
    ``\\t``)."""
    if _CONTROLS.search(text) is None:  # the usual case: nothing to do
        return text
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


def safe_line(text: str) -> str:
    """`safe`, on one line: line feeds and tabs become spaces (table cells, one-line messages)."""
    return safe(text).replace("\n", " ").replace("\t", " ")
