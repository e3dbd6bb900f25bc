"""`http_get`: fetch a URL, only from hosts the settings allow.

Off unless `http_allowlist` names hosts. Every redirect hop is checked against the list,
the whole fetch has one time limit, the body is read up to a byte limit, and the client
ignores proxy/netrc settings from the environment (no credentials are ever attached).
The allowlist names hosts, not addresses: it does not stop an allowed name that resolves to
an internal address, so only list hosts you trust.
"""

from __future__ import annotations

from typing import Annotated

import anyio
import httpx
import msgspec

from crewbus_agents.tools.context import ToolContext
from crewbus_agents.tools.errors import HostNotAllowed, ToolFailed
from crewbus_agents.tools.registry import ToolArgs, tool
from crewbus_agents.tools.settings import ToolSettings

MAX_REDIRECTS = 3


def host_allowed(host: str, allowlist: list[str]) -> bool:
    """`example.com` allows exactly that host; `*.example.com` allows its subdomains."""
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def check_url(url: httpx.URL, settings: ToolSettings) -> None:
    if url.scheme not in ("http", "https"):
        raise ToolFailed(f"only http and https URLs can be fetched, not {url.scheme!r}")
    if not settings.http_allowlist:
        raise HostNotAllowed("http_get is turned off: no host is in the allowlist")
    if not host_allowed(url.host, settings.http_allowlist):
        raise HostNotAllowed(
            f"host {url.host!r} is not in the allowlist ({', '.join(settings.http_allowlist)})"
        )


async def fetch(url: str, settings: ToolSettings) -> tuple[int, str, bytes, bool]:
    """(status, content type, body up to the limit, truncated), following allowed redirects."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise ToolFailed(f"invalid URL: {e}") from None
    try:
        with anyio.fail_after(settings.http_timeout_s):
            async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
                for _ in range(MAX_REDIRECTS + 1):
                    check_url(target, settings)
                    async with client.stream("GET", target) as resp:
                        if resp.is_redirect and "location" in resp.headers:
                            target = target.join(resp.headers["location"])
                            continue
                        body, truncated = await _read_limited(resp, settings.http_max_bytes)
                        return (
                            resp.status_code,
                            resp.headers.get("content-type", ""),
                            body,
                            truncated,
                        )
    except TimeoutError:
        raise ToolFailed(
            f"no complete answer from {target.host} within {settings.http_timeout_s:g}s"
        ) from None
    except httpx.HTTPError as e:
        raise ToolFailed(f"could not fetch {target}: {type(e).__name__}: {e}") from None
    raise ToolFailed(f"more than {MAX_REDIRECTS} redirects")


async def _read_limited(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in resp.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), True
    return bytes(body), False


class HttpGetArgs(ToolArgs):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048, description="An http(s) URL")]


@tool(
    name="http_get",
    description="Fetch a web page or API response with HTTP GET (only from allowed hosts).",
)
async def http_get(args: HttpGetArgs, ctx: ToolContext) -> str:
    status, ctype, body, truncated = await fetch(args.url, ctx.settings)
    note = f"\n…[body longer than {ctx.settings.http_max_bytes} bytes; the rest was not read]"
    return f"HTTP {status} {ctype}\n\n{body.decode(errors='replace')}{note if truncated else ''}"
