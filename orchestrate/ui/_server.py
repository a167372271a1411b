"""`orchestrate ui`: bind, print the address with its token, open a browser, serve until
Ctrl-C, then cancel the runs in flight (recorded as cancelled) and exit 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import threading
import webbrowser
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import uvicorn

from orchestrate._errors import UsageError
from orchestrate.ui._app import closing, create_app

TOKEN_ENV = "ORCHESTRATE_UI_TOKEN"
GRACE_SECONDS = 5  # at most this long for open connections to close on Ctrl-C


def choose_token(env: Mapping[str, str] = os.environ) -> str:
    return env.get(TOKEN_ENV, "").strip() or secrets.token_urlsafe(32)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a UsageError naming the address that cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if sys.platform != "win32":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "pick another with --port, or --port 0 for any free port"
        if exc.errno not in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            hint = "check --host"
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint
        ) from None
    return sock


def address(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def can_open_browser(env: Mapping[str, str] = os.environ) -> bool:
    """No browser under CI, nor on a Linux without a display (an SSH session)."""
    if env.get("CI"):
        return False
    if sys.platform.startswith("linux"):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def serve(
    paths: Sequence[str | Path],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
    err: IO[str] = sys.stderr,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Serve until interrupted; UsageError if the address cannot be had."""
    for path in paths:
        if not Path(path).exists():
            raise UsageError(f"no such file or folder: {path}")
    token = choose_token(env)
    sock = bind(host, port)
    port = sock.getsockname()[1]
    app = create_app(paths, token=token, host=host, port=port, env=env)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {host}: anyone who can reach this machine and has "
            "the token can read the history and run workflows (they spend your API keys "
            "and run your Python functions)",
            file=err,
        )
    url = address(host, port, token)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACE_SECONDS
    )
    server = _Server(config, on_exit=lambda: closing(app))
    # Ctrl-C is a normal way to stop, also before uvicorn has set its own handler (and
    # uvicorn raises the signal again once it has shut down).
    with sock, contextlib.suppress(KeyboardInterrupt):
        print(f"orchestrate ui: {url}", file=err, flush=True)
        if open_browser and can_open_browser(env):
            threading.Timer(0.5, _open, (url,)).start()
        server.run(sockets=[sock])
    print("orchestrate ui: stopped", file=err)


def _open(url: str) -> None:
    with contextlib.suppress(Exception):  # no browser is no error: the address is printed
        webbrowser.open(url)


class _Server(uvicorn.Server):
    """uvicorn's server, which also tells the app as soon as Ctrl-C is pressed (uvicorn
    would first wait for the open event streams to close)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit
        self.loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.on_exit)
        super().handle_exit(sig, frame)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)
