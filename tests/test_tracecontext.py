"""W3C traceparent helpers."""

from __future__ import annotations

from crewbus.telemetry import tracecontext as tc


def test_header_round_trips() -> None:
    ctx = tc.new_trace()
    assert tc.parse(ctx.header()) == ctx
    assert len(ctx.trace_id) == 32 and len(ctx.span_id) == 16 and ctx.sampled


def test_child_keeps_trace_and_changes_span() -> None:
    parent = tc.new_trace()
    child = parent.child()
    assert child.trace_id == parent.trace_id and child.span_id != parent.span_id


def test_invalid_headers_are_treated_as_absent() -> None:
    valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert tc.parse(valid) is not None
    for bad in (
        None, "", "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ):
        assert tc.parse(bad) is None, bad


def test_future_versions_with_extra_fields_are_accepted() -> None:
    ctx = tc.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more")
    assert ctx is not None and not ctx.sampled


def test_inject_and_continue_through_headers() -> None:
    root = tc.new_trace()
    headers = tc.inject({"Nats-Msg-Id": "x"}, root)
    assert headers["Nats-Msg-Id"] == "x"
    nxt = tc.continue_or_start(headers)
    assert nxt.trace_id == root.trace_id
    assert tc.continue_or_start({}).trace_id != root.trace_id
