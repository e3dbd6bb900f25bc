"""HttpSettings: where the HTTP gateway listens and how it paces its clients."""

from __future__ import annotations

from typing import Annotated

import msgspec

ENV_PREFIX = "CREWBUS_HTTP_"
DEFAULT_HTTP_PORT = 8080
LOOPBACK = "127.0.0.1"


class HttpSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Read from `CREWBUS_HTTP_<FIELD>`; the gateway reaches NATS with the `bus` settings."""

    host: str = LOOPBACK
    """Address the gateway binds. Without any API key it binds 127.0.0.1 whatever this says
    (and says so): an open gateway is never reachable from another machine."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = DEFAULT_HTTP_PORT
    """Port of the HTTP API and the web UI (`/metrics` is served there too)."""
    sse_heartbeat_s: Annotated[float, msgspec.Meta(gt=0)] = 15.0
    """An idle event stream sends a comment this often, so proxies keep it open."""
    rate_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 600
    """Requests one API key may make per minute on one replica, unless the key sets its
    own (`crewbus apikey create --rate`); bursts of up to this many are allowed."""
    chat_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    """How long `/v1/chat/completions` waits for its task before answering 504."""
