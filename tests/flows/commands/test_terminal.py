"""What the commands print is safe in a terminal, and JSON they print stays JSON
(flows/commands/terminal.py)."""

import json

import orjson

from flows.commands.terminal import escape

HOSTILE = "a\x1b]52;c;aGk=\x07 \x7f \x9b31m \u202e b"


def test_json_with_del_c1_and_format_characters_stays_json_and_means_the_same():
    """JSON leaves DEL, C1 controls and format characters raw in its strings: a record
    ``tail`` prints, or ``explain --json``, must still parse, to the same value."""
    record = {"raw": HOSTILE, "detail": "\x9b"}
    shown = escape(orjson.dumps(record).decode())
    assert json.loads(shown) == record
    assert "\x7f" not in shown and "\x9b" not in shown and "\u202e" not in shown


def test_text_gets_readable_escapes():
    assert escape(HOSTILE) == "a\\x1b]52;c;aGk=\\x07 \\u007f \\u009b31m \\u202e b"
