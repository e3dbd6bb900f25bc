"""Who may reach the gateway, decided before anything is served: with no API key on the bus
it is open, so it binds 127.0.0.1 whatever `CREWBUS_HTTP_HOST` says. Its own module, light to
import, because `crewbus up` prints the same decision in its banner."""

from __future__ import annotations

import ipaddress

from crewbus.httpapi.settings import LOOPBACK


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def choose_host(asked: str, have_keys: bool) -> tuple[str, str]:
    """The host to bind, and a note when it is not the one asked for."""
    if have_keys or is_loopback(asked):
        return asked, ""
    return LOOPBACK, (f"no API keys exist, so the gateway is open and binds {LOOPBACK} "
                      f"only (not {asked}); create one with `crewbus apikey create NAME` "
                      "to serve other machines")


def access_line(have_keys: bool) -> str:
    """What the banner says about access."""
    if have_keys:
        return "API keys required"
    return "open: no API keys exist, so it listens on 127.0.0.1 only"
