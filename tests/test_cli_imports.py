"""The API's client commands stay light (issue 11): `incident status`, `list`, `approve` and the
rest of ``client/`` load neither the engine (temporalio) nor the records (sqlmodel, sqlalchemy), the
API server (fastapi, uvicorn), the audit and report tools (cryptography, structlog, matplotlib);
only httpx, pydantic and the request bodies. What they cost in time is in ``make bench-cli``; this
guards what they import. `incident --help` still lists every room's commands, and the process
still ends with the command's exit code and one error line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import starter
from sandbox.server import free_port

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("temporalio", "sqlmodel", "sqlalchemy", "fastapi", "starlette", "uvicorn",
         "cryptography", "structlog", "matplotlib", "numpy")  # fmt: skip
LOADED = f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})"


def python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter on this checkout, with the API down (nothing listens)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    env.update(PYTHONPATH=str(ROOT), CR_API_URL=f"http://127.0.0.1:{free_port()}",
               CR_API_TOKEN="crt_test", CR_DATA_DIR=str(tmp_path / "data"),
               CR_CONFIG_DIR=str(tmp_path / "config"))  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_importing_the_client_commands_loads_no_engine(tmp_path):
    done = python(f"import sys, client.cli, client.session, starter; print({LOADED})", tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == []


@pytest.mark.parametrize("args", [
    ["status", "X"],
    ["list", "--open", "--severity", "sev1"],
    ["approve", "X", "disclose", "--role", "legal", "--reason", "r"],
    ["timeline", "X", "--json"],
    ["whoami"],
])  # fmt: skip
def test_running_a_client_command_loads_no_engine(args, tmp_path):
    done = python(
        f"import sys, starter; code = starter.run({args!r}); print(code, {LOADED})", tmp_path
    )
    code, _, loaded = done.stdout.partition(" ")
    assert (code, json.loads(loaded.replace("'", '"'))) == ("1", []), done.stderr
    assert done.stderr.startswith("error: cannot reach the API") and done.stderr.count("\n") == 1


def test_the_process_ends_with_the_command_s_code_and_one_line(tmp_path):
    down = python("import sys; sys.argv = ['incident', 'status', 'X']; import starter; "
                  "starter.main()", tmp_path)  # fmt: skip
    assert down.returncode == 1 and down.stdout == ""
    assert down.stderr.startswith("error: cannot reach the API") and down.stderr.count("\n") == 1
    usage = python("import sys; sys.argv = ['incident', 'stauts']; import starter; starter.main()",
                   tmp_path)  # fmt: skip
    assert usage.returncode == 2 and "Did you mean 'status'?" in usage.stderr
    assert usage.stderr.count("\n") == 1 and "Traceback" not in usage.stderr


def test_help_lists_every_room_s_commands_in_order(capsys):
    assert starter.run(["--help"]) == 0
    rows = [
        line.split()[1]
        for line in capsys.readouterr().out.splitlines()
        if re.match(r"^│ [a-z]", line)
    ]  # a command's first line, not its help's next ones
    expected = [*starter.CLIENT_COMMANDS, *starter.operator_commands()]
    assert rows == expected
    assert {"status", "list", "approve", "login", "doctor", "audit", "up", "token"} <= set(rows)
