"""Serving the page: ``nudgesim viz [SCENARIO.toml] [--port 8765] [--host 127.0.0.1]``
checks the scenario, then serves ``nudgesim.viz.page:Page`` with solara's server in this
process (no child to outlive it), behind a Host-header check, with the scenario's path in
``NUDGESIM_VIZ_SCENARIO``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

LOOPBACK = ("127.0.0.1", "localhost", "::1")
SHUTDOWN_GRACE = 5
"""Seconds a stopping server waits for open browser tabs before closing them (assumption:
long enough to finish a frame; uvicorn's default waits for ever while a tab is open)."""


# ---------------------------------------------------------------------------------------
# Serving the page (`nudgesim viz`, in nudgesim.cli.viz, checks its input first)
# ---------------------------------------------------------------------------------------


_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", re.IGNORECASE)


def _is_host_name(name: str) -> bool:
    """A DNS name or IPv4 address, or an IPv6 address (the only kind with colons)."""
    if ":" not in name:
        return _DNS_NAME.fullmatch(name) is not None
    import ipaddress

    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host header values the server answers: the loopback names, `host` and `extra`, each
    with `port` (and bare when the port is 80, as browsers then omit it)."""
    from ..errors import UsageError

    out = set()
    named = [("", n) for n in LOOPBACK] + [("--host", host)] + [("--allow-host", n) for n in extra]
    for option, given in named:
        name = given.strip().strip("[]").lower()
        if not _is_host_name(name):
            raise UsageError(
                f"{option}: {given!r} is not a host name; allowed: a DNS name or IP address "
                "without port, e.g. mybox.local"
            )
        authority = f"[{name}]" if ":" in name else name
        out.add(f"{authority}:{port}")
        if port == 80:
            out.add(authority)
    return frozenset(out)


class TrustedHosts:
    """ASGI wrapper that answers only requests whose Host header is one of `allowed`.

    Why: a page on evil.example.com whose name the attacker re-points at 127.0.0.1 (DNS
    rebinding) reaches a loopback server as same-origin, with its own name in Host. Plain
    requests get 400, websockets are closed before the handshake (the server sends 403).
    Starlette's TrustedHostMiddleware drops the port and misreads [::1], hence this one.
    """

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(a.lower() for a in allowed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), b"")
            if host.decode("latin-1").strip().lower() not in self.allowed:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b"Invalid Host header: nudgesim viz answers only the names it serves\n"
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve(host: str, port: int, allowed: Iterable[str]) -> None:
    """Serve the page as ``solara run nudgesim.viz.page:Page --production`` would, in this
    process and behind :class:`TrustedHosts`. Returns when the server stops (SIGTERM or
    Ctrl-C: uvicorn then re-raises the signal, so the process ends as the signal says)."""
    import solara.server.settings as settings
    import uvicorn

    # what `solara run` sets before its server imports the app
    os.environ["SOLARA_APP"] = "nudgesim.viz.page:Page"
    os.environ["SERVER_NAME"] = host
    os.environ["SERVER_PORT"] = str(port)
    settings.main.mode = "production"
    from solara.__main__ import LOGGING_CONFIG
    from solara.server.starlette import app as solara_app

    config = uvicorn.Config(TrustedHosts(solara_app, allowed), host=host, port=port,
                            log_config=LOGGING_CONFIG, timeout_graceful_shutdown=SHUTDOWN_GRACE)
    uvicorn.Server(config).run()
