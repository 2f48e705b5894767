"""End to end as people use it: `incident up` (real dev server, emulators, intake, worker, API) in
one process group, and the `incident` CLI in separate processes, over loopback: every incident
command goes through the API as a signed-in person (the local admin, or someone the test adds to
the roster with a token of their own).

Also: the CLI never dies at exit (temporalio/sdk-python#300), bad input is one line and a non-zero
exit, a restart of the stack keeps open incidents, and a SIGKILLed worker loses nothing.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.server import free_port
from stack.devserver import port_open

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def stack_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    env.update(
        CR_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        CR_UI_PORT=str(free_port()),
        CR_DATA_DIR=str(data_dir),
        CR_DATABASE_URL=f"sqlite:///{data_dir / 'records.db'}",
        CR_SANDBOX_PORT=str(free_port()),
        CR_INTAKE_PORT=str(free_port()),
        CR_API_PORT=str(free_port()),
        CR_TASK_QUEUE=f"e2e-{uuid.uuid4().hex[:6]}",
        CR_CLI_TIMEOUT_SECONDS="20",
        CR_ACTOR="casey.ic",
        CR_CONFIG_DIR=str(data_dir / "config"),  # never the user's own sign-in
    )
    return env


class Stack:
    """`incident up` running in its own process group."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.log = Path(env["CR_DATA_DIR"]) / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = subprocess.Popen(
            [str(BIN / "incident"), "up"], env=self.env, stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while b"Ready." not in self.log.read_bytes()[offset:]:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def interrupt(self) -> int:
        """Ctrl-C as a terminal sends it: SIGINT to the whole foreground group."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=30)

    @property
    def temporal_port(self) -> int:
        return int(self.env["CR_TEMPORAL_ADDRESS"].rsplit(":", 1)[1])


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "incident"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def cli_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(cli(env, *args, "--json").stdout)


_TOKENS: dict[tuple[str, str], str] = {}


def signed_in(env: dict[str, str], handle: str, *roles: str) -> dict[str, str]:
    """``env`` as ``handle`` would use it: added to the roster (by the local admin) with ``roles``
    and given a personal token, the first time; people join before the incidents they act on."""
    key = (env["CR_DATA_DIR"], handle)
    if key not in _TOKENS:
        cli(
            env,
            "people",
            "add",
            handle,
            "--name",
            handle,
            *[a for r in roles for a in ("--role", r)],
        )
        _TOKENS[key] = cli(env, "token", "create", handle, "--name", "e2e").stdout.strip()
    return dict(env, CR_API_TOKEN=_TOKENS[key])


def wait_until(fn: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(stack_env(tmp_path_factory.mktemp("stack")))
    running.start()
    yield running
    if running.proc and running.proc.poll() is None:
        running.interrupt()


def test_make_run_starts_on_a_data_directory_that_does_not_exist_yet(tmp_path: Path) -> None:
    """`make run` exactly as a fresh clone runs it: the data directory is created, not assumed."""
    data_dir = tmp_path / "fresh" / "data"
    env = stack_env(data_dir)
    env.pop("CR_DATABASE_URL")  # the default, inside the data directory, as on a laptop
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "-s", "run"], cwd=PROJECT_ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: b"Ready." in log.read_bytes() or proc.poll() is not None, 90)
        assert b"Ready." in log.read_bytes(), log.read_text()
        assert (data_dir / "temporal.db").exists() and (data_dir / "temporal.log").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    # make itself dies of the SIGINT, as at a terminal; what matters is that the stack stopped.
    assert proc.wait(timeout=30) in (0, -signal.SIGINT, 2), log.read_text()
    assert "stopped" in log.read_text() and "Traceback" not in log.read_text()
    assert not port_open("127.0.0.1", int(env["CR_TEMPORAL_ADDRESS"].rsplit(":", 1)[1]))


def test_a_taken_port_stops_up_at_once_with_one_line_naming_the_setting(tmp_path: Path) -> None:
    """Another program on the API's port: `incident up` says which setting to change and starts
    nothing (no dev server); the ports it serves on are bound before anything else starts, so a
    dev server's own connections can never take them (a CI run once lost the API's port so)."""
    env = stack_env(tmp_path / "data")
    with socket.socket() as other:
        other.bind(("127.0.0.1", int(env["CR_API_PORT"])))
        other.listen()
        proc = subprocess.run([str(BIN / "incident"), "up"], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
    port = env["CR_API_PORT"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"incident up: CR_API_PORT={port}: 127.0.0.1:{port} is already in use by another "
        "program; set CR_API_PORT to a free port"
    )
    assert not (tmp_path / "data" / "temporal.db").exists()
    assert not port_open("127.0.0.1", int(env["CR_INTAKE_PORT"]))  # released, not leaked


def status(env: dict[str, str], incident: str) -> dict[str, Any]:
    return cli_json(env, "status", incident)  # type: ignore[no-any-return]


def test_commander_and_legal_drive_an_incident_through_the_cli(stack: Stack) -> None:
    env = stack.env
    robin = signed_in(env, "robin.ic", "ic")
    incident = f"E2E-{uuid.uuid4().hex[:6]}"
    opened = cli_json(env, "open", "--playbook", "preservation", "--severity", "sev2",
                      "--summary", "Preservation letter from County DA", "--id", incident,
                      "--field", "requester_agency=County DA", "--field", "account_id=cust-1",
                      "--field", "requester_email=da@county.gov", "--field", "jurisdiction=us")  # fmt: skip
    assert opened["created"] is True and opened["playbook_hash"].startswith("sha256:")
    again = cli_json(env, "open", "--playbook", "preservation", "--summary", "dup", "--id",
                     incident, "--field", "requester_agency=x", "--field", "account_id=y",
                     "--field", "requester_email=z@county.gov")  # fmt: skip
    assert again["created"] is False

    assert cli_json(env, "ack", incident)["kind"] == "acknowledged"
    assert cli_json(env, "assign", incident, "--to", "robin.ic")["data"]["to"] == "robin.ic"
    noted = cli_json(robin, "note", incident, "Requester verified by phone")
    assert (noted["actor"], noted["role"]) == ("robin.ic", "ic")
    nobody = cli(env, "assign", incident, "--to", "no.such.person", check=False)
    assert nobody.returncode == 1 and "no.such.person is not on the roster" in nobody.stderr
    escalated = cli_json(
        env, "escalate", incident, "--severity", "sev1", "--reason", "deletion job"
    )
    assert escalated["data"] == {"from": "sev2", "to": "sev1"}

    # Drive the playbook: send each awaited event, decide each approval as the right role.
    from playbooks.loader import load_playbook

    loaded = load_playbook("preservation")
    steps = {s.id: s for s in loaded.playbook.iter_steps()}
    sent: set[str] = set()

    def advance() -> bool:
        st = status(env, incident)
        for active in st["active_steps"]:
            step = steps[active["step_id"]]
            if step.kind == "wait_for" and step.id not in sent:
                sent.add(step.id)
                sets = loaded.playbook.events[step.event].sets
                data = [arg for name in sets[:1] for arg in ("--data", f"{name}=REF-1")]
                cli(env, "event", incident, step.event, *data)
            if step.kind == "timer":
                return True
        return False

    wait_until(advance, timeout=60)
    st = status(env, incident)
    assert st["severity"] == "sev1" and st["owner"] == "robin.ic"
    assert any(c["name"] == "incident.acknowledge" and c["state"] == "met" for c in st["clocks"])

    human = cli(env, "status", incident).stdout
    assert incident in human and "preservation" in human

    closed = cli_json(env, "close", incident, "--resolution", "Hold released after review")
    assert closed["kind"] == "closed"
    refused = cli(env, "note", incident, "too late", check=False)
    assert refused.returncode == 1 and "incident_closed" in refused.stderr
    assert "Traceback" not in refused.stderr

    timeline = cli_json(env, "timeline", incident)
    kinds = [e["kind"] for e in timeline]
    assert kinds[0] == "opened" and kinds[-2:] == ["closed", "step_cancelled"] or "closed" in kinds
    assert [e["seq"] for e in timeline] == list(range(1, len(timeline) + 1))

    listed = wait_until(lambda: [r for r in cli_json(env, "list") if r["incident_id"] == incident
                                 and r["status"] == "closed"])  # fmt: skip
    assert listed[0]["playbook"] == "preservation" and listed[0]["severity"] == "sev1"

    sandbox = httpx.get(f"http://127.0.0.1:{env['CR_SANDBOX_PORT']}/_sandbox/state").json()
    cases = [c for c in sandbox["salesforce"]["records"]["Case"].values()
             if c.get("Incident_Id__c") == incident]  # fmt: skip
    assert len(cases) == 1


def test_personal_data_never_reaches_the_dev_servers_database(stack: Stack) -> None:
    """Payloads are sealed before they leave our processes (issue 10): the dev server's SQLite
    files never hold the phone number an incident was opened with, while every command still
    reads it back. The first run made the master key file, mode 0600."""
    env, canary = stack.env, "+15550107373"
    incident = f"E2E-{uuid.uuid4().hex[:6]}"
    cli_json(env, "open", "--playbook", "preservation", "--id", incident,
             "--summary", f"Officer asks for a call back on {canary}",
             "--field", f"requester_agency=County DA, desk {canary}",
             "--field", "account_id=cust-7", "--field", "requester_email=da@county.gov")  # fmt: skip
    cli_json(env, "note", incident, f"Called {canary}, no answer")
    st = status(env, incident)
    assert canary in st["summary"] and canary in st["fields"]["requester_agency"]
    assert any(canary in (e.get("detail") or "") for e in cli_json(env, "timeline", incident))
    data_dir = Path(env["CR_DATA_DIR"])
    stored = sorted(data_dir.glob("temporal.db*"))
    assert stored and not [p.name for p in stored if canary.encode() in p.read_bytes()]
    # Nor the records database: its rows are sealed under the incident's data key too.
    records = sorted(data_dir.glob("records.db*"))
    assert any(b"sealed:v1:" in p.read_bytes() for p in records)
    assert not [p.name for p in records if canary.encode() in p.read_bytes()]
    assert oct((data_dir / "master-keys.json").stat().st_mode & 0o777) == "0o600"
    assert "Payloads      sealed (AES-256-GCM)" in stack.log.read_text()

    # An auditor's export is sealed too, and no file of the data directory holds the canary in
    # clear (logs included), but what the emulated vendors received: a real Salesforce keeps the
    # case it was sent.
    export = data_dir.parent / f"{incident}.json"
    cli(env, "audit", "export", incident, "--out", str(export))
    assert canary.encode() not in export.read_bytes()
    vendor_side = {"sandbox-state.json", "sandbox-state.json.lock"}
    files = [p for p in data_dir.rglob("*") if p.is_file() and p.name not in vendor_side]
    assert len(files) > 10
    leaked = [str(p.relative_to(data_dir)) for p in files if canary.encode() in p.read_bytes()]
    assert leaked == []

    # `temporal` itself shows ciphertext, and plaintext only through the API's codec server for
    # a signed-in reader.
    from stack.devserver import temporal_binary

    def show(*codec: str, refused: bool = False) -> str:
        """The history as `temporal workflow show` prints it, payload data base64-decoded."""
        import base64
        import re

        proc = subprocess.run(
            [str(temporal_binary()), "workflow", "show", "--address", env["CR_TEMPORAL_ADDRESS"],
             "-w", f"incident-{incident}", "--output", "json", *codec],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if refused:  # the codec server said 401: the CLI shows nothing
            assert proc.returncode != 0 and "{" not in proc.stdout
            return proc.stdout
        assert proc.stdout.startswith("{"), proc.stderr
        data = re.findall(r'"data": "([A-Za-z0-9+/=]*)"', proc.stdout)
        return "".join(base64.b64decode(d).decode(errors="replace") for d in data)

    codec = ["--codec-endpoint", f"http://127.0.0.1:{env['CR_API_PORT']}/codec"]
    assert canary not in show()
    token = (data_dir / "local-admin.token").read_text().strip()
    assert canary in show(*codec, "--codec-auth", f"Bearer {token}")
    reader = signed_in(env, "sam.sec", "sec")  # any reading role, by their own token
    show(*codec, "--codec-auth", "Bearer crt_not-a-token", refused=True)
    assert canary in show(*codec, "--codec-auth", f"Bearer {reader['CR_API_TOKEN']}")


def test_approval_refusals_are_clear_and_recorded(stack: Stack) -> None:
    env = stack.env
    kim, lee = signed_in(env, "kim", "comms"), signed_in(env, "lee.lers", "lers", "legal")
    incident = f"E2E-{uuid.uuid4().hex[:6]}"
    cli(env, "open", "--playbook", "emergency-disclosure", "--summary", "Police: threat to life",
        "--id", incident, "--field", "requester_agency=PD", "--field", "requester_email=a@pd.gov",
        "--field", "account_id=acct-9")  # fmt: skip
    st = wait_until(lambda: (s := status(env, incident))["pending_approvals"] and s)
    step = st["pending_approvals"][0]["step_id"]
    roles = st["pending_approvals"][0]["roles"]

    wrong = cli(kim, "approve", incident, step, "--role", "comms", "--reason", "x", check=False)
    assert wrong.returncode == 1 and "role_not_allowed" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    # A role Kim does not hold is refused at the door, naming the role needed.
    posing = cli(kim, "approve", incident, step, "--role", "legal", "--reason", "x", check=False)
    assert posing.returncode == 1
    assert "refused (forbidden): deciding as legal needs one of the roles: legal" in posing.stderr
    own = cli(env, "approve", incident, step, "--role", roles[0], "--reason", "x", check=False)
    assert own.returncode == 1 and "self_approval" in own.stderr
    unknown = cli(env, "approve", incident, "no-such-step", "--role", "legal", "--reason", "x",
                  check=False)  # fmt: skip
    assert unknown.returncode == 1 and "unknown_step" in unknown.stderr

    ok = cli_json(lee, "approve", incident, step, "--role", roles[0], "--reason", "verified")
    assert ok["outcome"] in ("approved", "awaiting_second_approver")
    twice = cli(lee, "approve", incident, step, "--role", roles[0], "--reason", "again",
                check=False)  # fmt: skip
    assert twice.returncode == 1
    assert "already_decided" in twice.stderr or "same_approver" in twice.stderr
    signalled = cli(kim, "reject", incident, step, "--role", "comms", "--reason", "x", "--signal",
                    check=False)  # fmt: skip
    # A signal cannot answer, so the CLI waits for the entry it produced: here, the refusal.
    assert signalled.returncode == 1 and "reject refused (already_decided)" in signalled.stderr
    assert len(signalled.stderr.strip().splitlines()) == 1

    def refusals() -> list[dict[str, Any]]:
        return [e for e in cli_json(env, "timeline", incident) if e["kind"] == "approval_refused"]

    recorded = wait_until(lambda: len(refusals()) >= 3 and refusals())
    codes = {e["data"]["code"] for e in recorded}
    assert {"role_not_allowed", "self_approval"} <= codes
    cli(env, "close", incident, "--resolution", "test over")


def test_bad_input_is_one_line_and_non_zero(stack: Stack, tmp_path: Path) -> None:
    env = stack.env
    cases = [
        (["open", "--playbook", "no-such-playbook", "--summary", "x"], "unknown playbook"),
        (["open", "--playbook", "preservation", "--summary", "x", "--severity", "sev9"],
         "--severity"),
        (["open", "--playbook", "preservation", "--summary", "x", "--field", "oops"], "--field"),
        (["escalate", "NOPE", "--severity", "sevX", "--reason", "x"], "--severity"),
        (["status", "does-not-exist"], "not found"),
    ]  # fmt: skip
    for args, expected in cases:
        proc = cli(env, *args, check=False)
        assert proc.returncode != 0, args
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout

    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nversion: 1\ntitle: B\nsteps:\n  - id: a\n    kind: teleport\n")
    lint = cli(env, "lint", str(bad), check=False)
    assert lint.returncode == 1
    assert f"{bad}:6: steps[0].kind" in lint.stdout
    assert cli(env, "lint").returncode == 0
    names = {p["name"] for p in cli_json(env, "playbooks")}
    assert {"emergency-disclosure", "preservation", "physical-safety", "child-safety"} <= names


def test_cli_exits_cleanly_every_time(stack: Stack) -> None:
    """The SDK's native threads can abort a finishing interpreter (exit 134/139); ours never do."""
    env = stack.env
    incident = f"E2E-{uuid.uuid4().hex[:6]}"
    cli(env, "open", "--playbook", "child-safety", "--summary", "CyberTipline candidate",
        "--id", incident, "--field", "jurisdiction=us")  # fmt: skip
    codes = [cli(env, "status", incident, "--json", check=False).returncode for _ in range(15)]
    assert codes == [0] * 15
    cli(env, "close", incident, "--resolution", "test over")


def test_restart_keeps_open_incidents_and_leaves_no_orphans(tmp_path: Path) -> None:
    running = Stack(stack_env(tmp_path))
    running.start()
    incident = f"E2E-{uuid.uuid4().hex[:6]}"
    cli(running.env, "open", "--playbook", "child-safety", "--summary", "report", "--id", incident,
        "--field", "jurisdiction=us")  # fmt: skip
    cli(running.env, "ack", incident)
    assert running.interrupt() == 0
    assert not port_open("127.0.0.1", running.temporal_port), "dev server left running"

    running.start()
    try:
        st = status(running.env, incident)
        assert st["status"] == "acknowledged" and st["playbook"] == "child-safety"
        cli(running.env, "close", incident, "--resolution", "done")
    finally:
        running.interrupt()


def group_commands(pgid: int, needle: bytes) -> list[bytes]:
    """Command lines (NUL-separated, from /proc) of the processes in group ``pgid`` holding
    ``needle``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[2]) == pgid and needle in cmdline:
            found.append(cmdline)
    return found


def test_make_run_with_several_worker_processes(tmp_path: Path) -> None:
    """`CR_WORKER_PROCESSES=2`: two `python -m worker` processes take the incidents' tasks, and
    Ctrl-C stops them with everything else (nothing is left in the stack's process group)."""
    running = Stack(dict(stack_env(tmp_path), CR_WORKER_PROCESSES="2"))
    running.start()
    assert running.proc is not None
    try:
        assert "(2 processes)" in running.log.read_text()
        assert len(group_commands(running.proc.pid, b"-m\x00worker")) == 2
        incident = f"E2E-{uuid.uuid4().hex[:6]}"
        cli(running.env, "open", "--playbook", "child-safety", "--summary", "report", "--id",
            incident, "--field", "jurisdiction=us")  # fmt: skip
        wait_until(lambda: status(running.env, incident)["active_steps"])
        cli(running.env, "close", incident, "--resolution", "done")
    finally:
        assert running.interrupt() == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(running.proc.pid, 0)  # no worker outlived the stack


def test_sigkilled_worker_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """A second worker process beside the stack's, and an API that opens incidents on its task
    queue; kill -9 the worker mid-incident, start another."""
    env = dict(
        stack.env, CR_TASK_QUEUE=f"kill-{uuid.uuid4().hex[:6]}", CR_API_PORT=str(free_port())
    )
    approvers = {role: signed_in(env, f"{role}.approver", role) for role in ("lers", "legal")}
    incident = f"E2E-{uuid.uuid4().hex[:6]}"

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, *args], env=env,
                                stdout=(tmp_path / "worker.log").open("ab"),
                                stderr=subprocess.STDOUT)  # fmt: skip

    api = spawn("-c", "from api.app import build_server; build_server().run()")
    wait_until(lambda: port_open("127.0.0.1", int(env["CR_API_PORT"])))
    first = spawn("-m", "worker")
    cli(env, "open", "--playbook", "emergency-disclosure", "--summary", "threat", "--id",
        incident, "--field", "requester_agency=PD", "--field", "requester_email=a@pd.gov",
        "--field", "account_id=acct-1")  # fmt: skip
    wait_until(lambda: status(env, incident)["pending_approvals"])
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = spawn("-m", "worker")
    try:
        for _ in range(3):  # the three verification approvals, then Legal's determination
            pendings = wait_until(lambda: status(env, incident)["pending_approvals"], 60)
            for p in pendings:
                role = p["roles"][0]
                cli(approvers[role], "approve", incident, p["step_id"], "--role", role,
                    "--reason", "verified", check=False)  # fmt: skip
            if any(p["step_id"] == "legal-determination" for p in pendings):
                break
        wait_until(lambda: any(s["kind"] == "wait_for" for s in status(env, incident)["active_steps"]),
                   timeout=60)  # fmt: skip
        # --confirm: the playbook opened its linked preservation incident, still open
        cli(env, "close", incident, "--resolution", "done", "--confirm")
        timeline = cli_json(env, "timeline", incident)  # queries need a worker to answer
    finally:
        second.send_signal(signal.SIGTERM)
        api.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
        api.wait(timeout=30)
    assert [e["seq"] for e in timeline] == list(range(1, len(timeline) + 1))
    started = [e["step"] for e in timeline if e["kind"] == "step_started"]
    assert len(started) == len(set(started)), "a step ran twice"
    sandbox = httpx.get(f"http://127.0.0.1:{env['CR_SANDBOX_PORT']}/_sandbox/state").json()
    cases = [c for c in sandbox["salesforce"]["records"]["Case"].values()
             if c.get("Incident_Id__c") == incident]  # fmt: skip
    assert len(cases) == 1


def readme_walkthrough() -> str:
    """The README's command block ("From another terminal"), as a shell script."""
    import re

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = re.search(r"From another terminal.*?```sh\n(.*?)```", readme, re.S)
    assert block is not None, "the README lost its walk-through"
    return block.group(1)


def test_the_readme_walkthrough_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    """The README's walk-through, run by bash exactly as printed (stopping at the first failure),
    succeeds on the embedded stack through the API, so the README cannot drift from the code."""
    script = readme_walkthrough()
    lines = [ln for ln in script.replace("\\\n", " ").splitlines() if ln.strip()]
    assert all("incident " in ln for ln in lines) and len(lines) >= 12
    env = dict(stack.env, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    assert "error" not in proc.stderr.lower(), proc.stderr
    timeline = cli_json(stack.env, "timeline", "SF-00042")
    kinds = [e["kind"] for e in timeline]
    assert "approved" in kinds and kinds.count("closed") == 1
    approved = next(e for e in timeline if e["kind"] == "approved")
    assert (approved["step"], approved["actor"], approved["role"]) == (
        "retailer-notice-approval",
        "lena",
        "legal",
    )
    assert {e["actor"] for e in timeline if e["kind"] in ("acknowledged", "closed")} == {"casey.ic"}


def test_make_run_serves_the_api_with_a_token_for_the_local_admin(stack: Stack) -> None:
    """The first `incident up` makes the local user an admin with a token (mode 0600); the API
    answers that token, refuses none, and a revoked token stops working at once."""
    token_file = Path(stack.env["CR_DATA_DIR"]) / "local-admin.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    token = token_file.read_text().strip()
    api = f"http://127.0.0.1:{stack.env['CR_API_PORT']}"
    auth = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{api}/incidents", timeout=10).status_code == 401
    assert httpx.get(f"{api}/incidents", headers=auth, timeout=10).status_code == 200
    assert httpx.get(f"{api}/openapi.json", timeout=10).json()["info"]["title"]
    listed = cli_json(stack.env, "token", "list")
    admin = next(t for t in listed if t["name"] == "local admin (make run)")
    cli(stack.env, "token", "revoke", admin["id"])
    refused = httpx.get(f"{api}/incidents", headers=auth, timeout=10)
    assert (refused.status_code, refused.json()["error"]) == (401, "revoked")


def test_make_run_serves_the_console_and_prints_how_to_sign_in(stack: Stack) -> None:
    """`incident up` prints the console's address and where the local admin's first console
    password is (0600); signing in with it opens the incidents page."""
    api = f"http://127.0.0.1:{stack.env['CR_API_PORT']}"
    log = stack.log.read_text()
    password_file = Path(stack.env["CR_DATA_DIR"]) / "local-admin.password"
    assert f"Console       {api}/console" in log
    assert f"sign in as casey.ic with the password in {password_file}" in log
    assert oct(password_file.stat().st_mode & 0o777) == "0o600"
    with httpx.Client(base_url=api, timeout=10) as browser:
        form = browser.get("/console/incidents", follow_redirects=True)
        assert form.status_code == 200 and 'action="/console/signin"' in form.text
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = browser.post("/console/signin", data={
            "handle": "casey.ic", "password": password_file.read_text().strip(), "csrf": csrf})  # fmt: skip
        assert signed.status_code == 303
        page = browser.get("/console/incidents")
        assert page.status_code == 200 and "Signed in as <strong>casey.ic</strong>" in page.text
        assert browser.get("/console/static/vendor/htmx-2.0.11.min.js").status_code == 200
