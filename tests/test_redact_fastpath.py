"""The redactor's JSON fast path (`Redactor.may_redact`) against its full Python walk.

Whatever the fast path skips, the walk would have returned unchanged: generated values
mix env secrets, credential shapes, secret keys, JSON-special characters and non-ASCII,
and every one must come out of `data` exactly as the walk makes it.
"""

from __future__ import annotations

import random
import re
from typing import Any

import msgspec

from crewbus.tracing import Tracer
from crewbus_agents.tools.redact import _JSON_FIELD, _JSON_FIELDS, REDACTED, Redactor
from crewbus_contracts.events import ApprovalRequested, TaskSubmitted

ENV = {
    "OPENAI_API_KEY": "plain-looking-value-123",
    "QUOTED_TOKEN": 'ab"cd\\ef\nzz',
    "UNICODE_SECRET": "clé-sécrète-\u017fK",
    "CTRL_PASSWORD": "x\x01y\ty\u2028z",
    "HOME": "/home/crew",
}
SHAPES = [
    "sk-proj-AbCdEf0123456789AbCdEf", "Bearer eyJhbGciOiJIUzI1NiJ9.sig", "BEARER abcdefghij",
    "Authorization: Basic dXNlcjpwYXNzd29yZA==", "postgres://crew:hunter2secret@db:5432/x",
    "AKIAIOSFODNN7EXAMPLE", "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-1234567890-abcdef", "authorİzation: token abcdefgh12", "https://example.test/a",
]
SPECIAL = ['"', "\\", "\n", "\x00", "\x1f", '":', '\\"', "\u2028", "é", "İ", "\u212a", "\u017f",
           "Σ", "😀", "{", "}", ",", ":", "[", "]", "_", "-", " ", "\t"]
WORDS = ["hello", "task-42", "max_tokens", "token", "author", "key", "monkey", "auth",
         "cookie", "pass", "word", "secret", "the plan", "Ada"]
KEYS = ["api_key", "Authorization", "password", "x\"token", "token\n", ":_token_\"x",
        "x\n_secret", "max_tokens", "input_tokens", "author", "text", "hits", "score",
        "Cookie", "private-key", "ACCESS_TOKEN", "credentials", "monkey", "tokenizer",
        'a"b\\', "İd", "auth\\", "secret\x01", "", "\u017fecret", "\u212aey"]
SECRETS = [v for k, v in ENV.items() if k != "HOME"]


def _text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 5)):
        source = rng.random()
        if source < 0.08:
            parts.append(rng.choice(SECRETS))
        elif source < 0.14:
            parts.append(rng.choice(SHAPES))
        elif source < 0.5:
            parts.append(rng.choice(SPECIAL))
        else:
            parts.append(rng.choice(WORDS))
    return "".join(parts)


def _key(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.1:
        return rng.randint(-5, 5)
    if pick < 0.15:
        return rng.choice([1.5, -0.25])
    return rng.choice(KEYS) if pick < 0.7 else _text(rng)


def _value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.random()
    if depth < 4 and pick < 0.25:
        return {_key(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if depth < 4 and pick < 0.35:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4 and pick < 0.42:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    if pick < 0.8:
        return _text(rng)
    return rng.choice([None, True, False, 0, 7, -3, 2.5, 1e300, b"sk-bytes-are-left-alone",
                       "", 10**30])


def test_generated_values_come_out_of_the_fast_path_as_the_walk_makes_them() -> None:
    rng = random.Random(20261202)
    redactor = Redactor(env=ENV)
    skipped = changed = 0
    for _ in range(6000):
        value = _value(rng)
        walked = redactor._walk(value)
        assert redactor.data(value) == walked, value
        if not redactor.may_redact(value):
            skipped += 1
            assert walked == value, value
        if walked != value:
            changed += 1
    assert skipped > 600 and changed > 600  # both ways are exercised


def test_generated_structs_are_redacted_by_the_tracer_as_through_builtins() -> None:
    class Record(msgspec.Struct):
        name: str
        data: dict[str, Any]
        items: list[Any]
        raw: bytes = b""

    rng = random.Random(7)
    redactor = Redactor(env=ENV)
    tracer = Tracer(None, "test", redactor)
    same = 0
    for _ in range(1500):
        data = {str(_key(rng)): _value(rng, 2) for _ in range(rng.randint(0, 4))}
        record = Record(name=_text(rng), data=data, items=[_value(rng, 3)],
                        raw=_text(rng).encode("utf-8", "replace"))
        builtins = msgspec.to_builtins(record)
        old = msgspec.convert(redactor._walk(builtins), Record)
        new = tracer.redact(record)
        if new is record:  # the walk changed nothing (the round trip may: bytes in Any)
            same += 1
            assert redactor._walk(builtins) == builtins, record
        else:
            assert new == old, record
    assert same > 75
    for event in (TaskSubmitted(task_id="t1", text="hi there", at=1.0),
                  ApprovalRequested(task_id="t1", round=1, step_id="s", call_key="c",
                                    tool="http", arguments='{"q": "max_tokens"}', expires_at=2,
                                    at=1.0)):
        assert tracer.redact(event) is event
    leaked = TaskSubmitted(task_id="t1", text=f"use {ENV['QUOTED_TOKEN']}!", at=1.0)
    assert tracer.redact(leaked).text == f"use {REDACTED}!"


def test_secrets_with_json_escapes_and_escaped_secret_keys_are_found() -> None:
    redactor = Redactor(env=ENV)
    assert redactor.data({"k": [f"pre {ENV['QUOTED_TOKEN']} post"]}) == {
        "k": [f"pre {REDACTED} post"]}
    assert redactor.data((f"{ENV['CTRL_PASSWORD']}",)) == (REDACTED,)
    assert redactor.data([ENV["UNICODE_SECRET"]]) == [REDACTED]
    # `$` matches before a key's trailing newline; an escaped key ends in `\n` in JSON.
    assert redactor.data({"token\n": "v"}) == {"token\n": REDACTED}
    assert redactor.data({"x\n_token": "v", 'a"password': "w"}) == {
        "x\n_token": REDACTED, 'a"password': "w"}
    # A string opening with `":` after another one must not throw the key scan off step.
    assert redactor.data({"a": [",", ':_token_"x'], ':_token_"x': "v"}) == {
        "a": [",", ':_token_"x'], ':_token_"x': REDACTED}
    assert redactor.data({"token": ""}) == {"token": ""}
    plain = {"usage": {"max_tokens": 10}, "text": "a \"quoted\" line\n", "n": [1, 2.5]}
    assert not redactor.may_redact(plain)
    assert redactor.data(plain) is plain


def test_configured_patterns_other_than_literals_always_take_the_walk() -> None:
    anchored = Redactor(patterns=[r"^ACME-\d{3}$", r"tok\s+en"], env={})
    value = {"a": ["ACME-123", "tok\nen", "x ACME-123"]}
    assert anchored.may_redact({"a": "nothing here"})
    assert anchored.data(value) == {"a": [REDACTED, REDACTED, "x ACME-123"]}
    secret = 'mcp "secret"\\value'
    literal = Redactor(patterns=[re.escape(secret)], env={})
    assert not literal.may_redact({"a": ["nothing here"]})
    assert literal.data({"a": [f"x{secret}y"]}) == {"a": [f"x{REDACTED}y"]}


def test_values_json_cannot_hold_are_walked() -> None:
    class Text(str):
        pass

    redactor = Redactor(env={"LONE_TOKEN": "abc\udc80def", **ENV})
    assert redactor.data(["abc\udc80def!"]) == [f"{REDACTED}!"]
    assert redactor.data([Text("sk-abcdefghijklmnopqrstu")]) == [REDACTED]
    assert redactor.data({(1, 2): "plain-looking-value-123"}) == {(1, 2): REDACTED}


def test_the_key_regexes_led_by_words_match_where_the_one_regex_does() -> None:
    rng = random.Random(3)
    hits = 0
    for _ in range(4000):
        value = {_key(rng): _text(rng) for _ in range(rng.randint(1, 3))}
        lowered = msgspec.json.encode(value).lower() if rng.random() < 0.7 else (
            _text(rng).lower().encode())
        one = _JSON_FIELD.search(lowered) is not None
        assert any(f.search(lowered) for f in _JSON_FIELDS) == one, lowered
        hits += one
    assert hits > 400
