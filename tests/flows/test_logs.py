"""``--log-format json`` (flows/logs.py): one object a line, with the structured fields."""

import logging
import re

import orjson

from flows.logs import JsonFormatter


def formatted(message, *args, level=logging.INFO, **fields):
    record = logging.LogRecord("concierge.run", level, __file__, 1, message, args, None)
    record.created = 1_795_000_000.5
    for key, value in fields.items():
        setattr(record, key, value)
    return JsonFormatter().format(record)


def test_a_line_is_one_object_with_time_level_logger_and_message():
    line = formatted("reading %s from %s", "t.events", "kafka:9092")
    assert "\n" not in line
    assert orjson.loads(line) == {
        "time": "2026-11-18T11:06:40.500Z",
        "level": "info",
        "logger": "concierge.run",
        "message": "reading t.events from kafka:9092",
    }


def test_counts_logged_as_fields_come_as_numbers_beside_the_message():
    totals = {"records_read": 7, "dead_letters": 0, "decisions": 2, "actions": 2}
    line = orjson.loads(formatted("stopped; since it started: %s", "7 records read", **totals))
    assert line["message"] == "stopped; since it started: 7 records read"
    assert {k: line[k] for k in totals} == totals


def test_a_failure_with_a_traceback_stays_on_one_line():
    try:
        raise RuntimeError("writing to Kafka failed")
    except RuntimeError:
        import sys

        record = logging.LogRecord("concierge.run", logging.ERROR, "", 1, "x", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line and orjson.loads(line)["level"] == "error"
    assert "writing to Kafka failed" in orjson.loads(line)["exception"]


def test_times_are_rfc_3339_utc_with_milliseconds():
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", orjson.loads(formatted("x"))["time"]
    )
