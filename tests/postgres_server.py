"""A throw-away PostgreSQL server for the tests: initdb, pg_ctl start, pg_ctl stop.

The binaries come from `pg_config --bindir` (or Debian's /usr/lib/postgresql/N/bin).
initdb and postgres refuse to run as root, so as root (CI) they run as the `postgres`
system user, in a temporary folder that user owns. The server listens on 127.0.0.1 on a
free port, trusts local connections, and keeps its socket in that folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

REQUIRE = "ORCHESTRATE_REQUIRE_POSTGRES"
PASSWORD_USER = "orchestrate_pw"  # a role that logs in with a password, not by trust


def bindir() -> Path | None:
    """Where initdb and pg_ctl are, or None when PostgreSQL is not installed."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


class PostgresServer:
    """A server in a temporary folder; `url` names its `postgres` database (user postgres,
    no password)."""

    def __init__(self) -> None:
        binaries = bindir()
        if binaries is None:
            raise FileNotFoundError("PostgreSQL's initdb and pg_ctl are not installed")
        self.pg_ctl = binaries / "pg_ctl"
        self.folder = Path(tempfile.mkdtemp(prefix="orchestrate-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.data, self.port = self.folder / "data", free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        _run(
            binaries / "initdb",
            "-D",
            self.data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )
        # One role must give its password (for the bad-credentials tests); the rest trust.
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )

    def start(self) -> None:
        """Start, on 127.0.0.1:`port`; the socket stays in the temporary folder."""
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        _run(self.pg_ctl, "-D", self.data, "-o", options, "-l", self.folder / "log", "-w", "start")

    def stop(self) -> None:
        """Stop at once, as a crash or a lost network would look to a client."""
        subprocess.run(
            _as_server_user([str(self.pg_ctl), "-D", str(self.data), "-m", "immediate", "stop"]),
            capture_output=True,
        )

    def remove(self) -> None:
        """Delete the folder (the server must be stopped)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _run(*args: object) -> None:
    subprocess.run(_as_server_user([str(a) for a in args]), check=True, capture_output=True)


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server, stopped (immediately) and removed at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()
