"""`nudgesim viz [SCENARIO.toml] [--port 8765] [--host 127.0.0.1]`: check, then serve.

The scenario (and the files it names) and the port are checked here, before the server
starts, so a bad one exits with code 2 and one line; the page itself is nudgesim.viz.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from .. import scenarios
from ..errors import UsageError


def check_port(host: str, port: int) -> None:
    """A UsageError unless this process could listen on host:port now."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port: {port} is not a port; allowed: 1..65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            s.bind((host, port))
        except OSError as err:
            raise UsageError(
                f"--port: cannot listen on {host}:{port} ({err.strerror}); "
                "choose another port with --port"
            ) from None


def main(argv: list[str]) -> int:
    """Check the scenario (exit 2 with a message if bad), then serve the page with solara."""
    p = argparse.ArgumentParser(
        prog="nudgesim viz",
        description="Serve the browser visualisation (Mesa SolaraViz) on loopback.",
    )
    p.add_argument("scenario", nargs="?", default=None,
                   help="scenario TOML (default: the small_town.toml nudgesim ships)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface (default 127.0.0.1; anything else exposes the app)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (repeatable); by default only "
                   "127.0.0.1, localhost, [::1] and --host are answered")
    args = p.parse_args(argv)
    from ..engine import Engine
    from ..scenario import Scenario
    from ..viz.levers import ENV_SCENARIO
    from ..viz.server import LOOPBACK, allowed_hosts, serve

    path = Path(args.scenario or scenarios.path(scenarios.SMALL_TOWN)).resolve()
    sc = Scenario.from_toml(path)  # ScenarioError → the CLI prints it and exits 2
    Engine(sc)  # also catches graph/CSV problems before the server starts
    hosts = allowed_hosts(args.host, args.port, args.allow_host)
    check_port(args.host, args.port)
    if args.host not in LOOPBACK:
        print(f"nudgesim viz: warning: listening on {args.host} exposes the app beyond "
              "this machine", file=sys.stderr)
    os.environ[ENV_SCENARIO] = str(path)
    authority = f"[{args.host}]" if ":" in args.host else args.host
    print(f"nudgesim viz: {sc.name} ({path.name}) at http://{authority}:{args.port}/ "
          "(Ctrl-C stops)", flush=True)
    serve(args.host, args.port, hosts)
    return 0
