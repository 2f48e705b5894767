"""The data directory is private: the directory 0700, every file the project writes in it 0600.

It holds what an incident is made of and what protects it: the records database (summaries,
fields, the audit log; SQLite with its ``-wal``/``-shm``), the dev server's ``temporal.db`` (every
history) and ``temporal.log``, ``sandbox-state.json`` (what the emulators were sent: numbers,
addresses), the signing and audit keys, the local admin's token and the intake webhook secret.

Three layers keep it so. Each process entry point (``starter.main``, ``worker.main``, ``incident
up``, the intake) calls ``private_umask()`` first, so whatever it or a library creates, and whatever
a child process it starts creates (the Temporal dev server), is 0600 / 0700. The files we write
ourselves are created 0600 whatever the umask (``write_private``, ``create_private``, the key
modules, ``records/store.py`` for the SQLite file, whose ``-wal``/``-shm`` SQLite creates with the
database's own mode). And ``incident up`` and the worker ``secure_dir()`` the data directory at
start: 0700, and anything an older version left group- or world-readable is tightened.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

PRIVATE_UMASK = 0o077
OPEN_BITS = stat.S_IRWXG | stat.S_IRWXO  # group and other: read, write, execute


def private_umask() -> int:
    """From now on this process (and its children) create files 0600 and directories 0700."""
    return os.umask(PRIVATE_UMASK)


def secure_dir(path: Path) -> Path:
    """Create ``path`` 0700 if missing, make it 0700, and take group/other access off everything
    in it (directories and files; symbolic links are left alone)."""
    path = Path(path).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    for entry in path.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # a -shm or temp file may come and go
            mode = entry.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & OPEN_BITS:
                os.chmod(entry, stat.S_IMODE(mode) & ~OPEN_BITS)
    return path


def loose_files(path: Path) -> list[Path]:
    """Everything under ``path`` (itself included) that group or other may access."""
    path = Path(path)
    found = [path] if path.stat().st_mode & OPEN_BITS else []
    for entry in sorted(path.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            mode = entry.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & OPEN_BITS:
                found.append(entry)
    return found


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, mode 0600 (through a temp file in its directory)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def create_private(path: Path, text: str) -> bool:
    """Create ``path`` (0600) holding ``text``; False, and nothing written, if it exists."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    return True


def write_output(path: Path, text: str) -> Path:
    """A command's ``--out`` file: created 0600 (an export holds the incident's data); a file that
    exists already keeps its mode (it may be a device, or shared on purpose)."""
    fd = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return Path(path)


def touch_private(path: Path) -> Path:
    """Make sure ``path`` exists; a file this creates is 0600 (an existing one is left as is)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path
