"""Personal data at rest and crypto-shredding (issue 10): an incident's personal data is nowhere in
clear in the records database while every reader shows it; ``incident purge`` destroys its data
keys, after which its history, its archive, its records and an export made before are unreadable,
each reader says "purged at ... by ..." in one line, and the audit log still verifies. Refused while
the incident runs, under a legal hold, or before its retention ends.

On the real dev server with the real records activities and archive workflow (stand-ins for the
vendors) and a records database per test (``tests/records_db.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import starter
from activities import records
from audit.cli import UNREADABLE, ReplayFormat, audit_app, replay_items
from audit.export import closed_items, export_incident
from audit.replay import load_document, load_file
from audit.verify import verify
from connection import decode_payloads
from encryption.keystore import DataKeyDestroyed
from incidents import actions
from incidents.service import InvalidRequest, reopen_incident
from records.archive import archived_runs, history_of
from records.purge import IncidentPurged, PurgeRefused, purge_incident, purged
from records.tables import AuditRow, IncidentRecord, records_engine
from records.timeline import entries_before
from settings import Settings, get_settings
from tests.conftest import StandIns
from tests.engine_support import commander, incident_input, playbook, start
from tests.records_db import records_url
from workflows.archive import ArchiveIncidentWorkflow
from workflows.incident import IncidentWorkflow
from workflows.models import ExternalEvent, ReopenRequest
from workflows.names import archive_workflow_id, incident_id_of

pytestmark = pytest.mark.usefixtures(records_url.__name__)

CANARY = "+15550109797"  # a phone number: never in clear in the records database
PLAYBOOK = playbook(
    [
        {"id": "text", "kind": "action", "activity": "notify.sms",
         "args": {"to": "{{ contact_phone }}", "body": "about: {{ summary }}"}},
        {"id": "evidence", "kind": "wait_for", "event": "evidence"},
    ],
)  # fmt: skip


@asynccontextmanager
async def engine(client: Client) -> AsyncIterator[str]:
    """The incident workflow with the real records activities and archive; stand-in vendors."""
    queue = f"purge-{uuid.uuid4().hex[:8]}"
    stand_in = StandIns().activity()
    async with (
        Worker(client, task_queue=queue, activities=[*records.ACTIVITIES, stand_in],
               workflows=[IncidentWorkflow, ArchiveIncidentWorkflow]),
        Worker(client, task_queue=f"{queue}-salesforce", activities=[stand_in]),
    ):  # fmt: skip
        yield queue


def _record(incident_id: str) -> IncidentRecord | None:
    with Session(records_engine()) as s:
        return s.get(IncidentRecord, incident_id)


async def _until(check: Any, timeout: float = 30) -> None:
    async def poll() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def _close(client: Client, handle: WorkflowHandle[Any, Any], runs: int = 1) -> None:
    """Close by Update; wait for the outcome and for every run's history in the archive."""
    follow = client.get_workflow_handle_for(IncidentWorkflow.run, handle.id)
    reason = f"resolved; the caller at {CANARY} is safe"
    await follow.execute_update(IncidentWorkflow.close, commander(reason=reason))
    await follow.result()
    incident_id = incident_id_of(handle.id)

    async def archived() -> bool:
        return len(archived_runs(incident_id or "")) >= runs

    await _until(archived)


def _database_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def incident(*args: str) -> tuple[int, str, str]:
    """`incident ARGS` in a thread (it runs its own event loop): exit code, stdout, stderr."""

    def run() -> tuple[int, str, str]:
        stdout, stderr = io.StringIO(), io.StringIO()
        saved, sys.stdin = sys.stdin, io.StringIO("")
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = starter.run(list(args))
        finally:
            sys.stdin = saved
        return code, stdout.getvalue(), stderr.getvalue()

    return await asyncio.to_thread(run)


@pytest.fixture
def cli(dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch, records_url: str) -> Any:
    """The `incident` command pointed at the dev server."""
    monkeypatch.setenv("CR_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("CR_TEMPORAL_NAMESPACE", dev_env.client.namespace)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_personal_data_is_sealed_at_rest_and_purge_shreds_every_copy(
    dev_env, records_url, tmp_path, cli
):
    client = dev_env.client
    async with engine(client) as queue:
        inp = incident_input(PLAYBOOK, summary=f"caller at {CANARY} threatens harm",
                             fields={"contact_phone": CANARY}, continue_as_new_after_events=40)  # fmt: skip
        iid = inp.incident_id
        handle = await start(client, queue, inp)
        event = ExternalEvent(name="evidence", actor="dana", data={"witness": CANARY})
        await actions.send_event(client, iid, event)
        follow = client.get_workflow_handle_for(IncidentWorkflow.run, handle.id)
        for n in range(120):  # notes until the current run no longer carries the first entries
            if (await follow.query(IncidentWorkflow.timeline))[0].seq > 1:
                break
            note = commander("ivan", reason=f"note {n}: called {CANARY}")
            await follow.execute_update(IncidentWorkflow.note, note)
        runs = (await follow.query(IncidentWorkflow.status)).run
        assert runs > 1

        # `incident timeline` merges the earlier entries from the records, opened.
        timeline = await actions.timeline(client, iid)
        assert timeline[0].kind == "opened" and CANARY in timeline[0].detail
        [recorded] = [e for e in timeline if e.kind == "event"]
        assert recorded.data == {"witness": CANARY}
        assert [e.seq for e in timeline] == list(range(1, len(timeline) + 1))
        assert (await actions.status(client, iid)).fields["contact_phone"] == CANARY
        await _close(client, handle, runs=runs)

    # Nowhere in clear in the database file, though it holds the summary, the notes, the event,
    # the resolution and every run's archived history.
    raw = _database_bytes(records_url)
    assert b"sealed:v1:" in raw and CANARY.encode() not in raw
    assert CANARY.encode() not in Path(records_url.removeprefix("sqlite:///")).read_bytes()
    sealed = await export_incident(iid, client)
    assert sealed["manifest"]["encryption"] == "sealed"
    assert CANARY not in json.dumps(sealed)
    decrypted = await export_incident(iid, client, decrypt=True)
    assert decrypted["manifest"]["encryption"] == "decrypted" and CANARY in json.dumps(decrypted)
    for document in (sealed, decrypted):  # both replay here, where the keys are
        code, text = await replay_items(load_document(document, "test"), ReplayFormat.text)
        assert code == 0 and CANARY in text, text
    before = tmp_path / "before-purge.json"
    before.write_text(json.dumps(sealed))

    # The purge: the incident's key and each run's archive child's.
    code, out, err = await incident("purge", iid, "--reason", "retention ended (OPS-7)",
                                    "--as", "olga", "--yes")  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"purged: incident {iid} was purged at ") and "by olga" in out
    assert f"({1 + runs} data key(s) destroyed now)" in out
    purge = purged(iid)
    assert purge is not None and (purge.by, purge.reason) == ("olga", "retention ended (OPS-7)")
    line = purge.line()

    # Every copy is unreadable: Temporal's history, the archive, the records, the old export.
    history = await client.get_workflow_handle(handle.id).fetch_history()
    with pytest.raises(DataKeyDestroyed, match="crypto-shredded"):
        decode_payloads(
            history.events[0].workflow_execution_started_event_attributes.input.payloads
        )
    for run in archived_runs(iid):
        start_event = history_of(run).events[0]
        with pytest.raises(DataKeyDestroyed):
            decode_payloads(start_event.workflow_execution_started_event_attributes.input.payloads)
        child = await client.get_workflow_handle(
            archive_workflow_id(handle.id, run.run_id)
        ).fetch_history()
        with pytest.raises(DataKeyDestroyed):
            decode_payloads(
                child.events[0].workflow_execution_started_event_attributes.input.payloads
            )
    with pytest.raises(DataKeyDestroyed):
        entries_before(iid, 10**6)
    code, text = await replay_items(load_file(before), ReplayFormat.text)
    assert code == UNREADABLE and text.startswith(
        f"UNREADABLE: {line}; its data keys are destroyed"
    )
    code, text = await replay_items(load_file(before), ReplayFormat.json)
    assert code == UNREADABLE and json.loads(text)[0]["unreadable"].startswith(line)
    assert iid not in {item.incident_id for item in await closed_items(client)}  # --all-closed

    # ... and every reader says so in one line.
    for read in (actions.status, actions.timeline):
        with pytest.raises(actions.IncidentPurged, match="purged at .* by olga: retention ended"):
            await read(client, iid)
    with pytest.raises(IncidentPurged) as caught:
        await export_incident(iid, client)
    assert str(caught.value) == line
    with pytest.raises(InvalidRequest, match="it cannot be reopened"):
        await reopen_incident(client, iid, reopen=ReopenRequest(actor="olga", reason="x"),
                              task_queue=queue)  # fmt: skip

    # The audit log keeps that the incident existed and was purged, and still verifies.
    assert verify().ok and verify(iid).ok
    with Session(records_engine()) as s:
        rows = s.exec(
            select(AuditRow).where(AuditRow.incident_id == iid).order_by(col(AuditRow.id))
        ).all()
    assert rows[-1].action == "purged" and rows[-1].actor == "olga"
    assert rows[-1].detail == "retention ended (OPS-7)"  # in clear: its key is gone
    from typer.testing import CliRunner

    result = CliRunner().invoke(audit_app, ["verify", iid])
    assert result.exit_code == 0 and result.output.startswith("OK ")
    assert f"{line} (its sealed rows are shredded; the chain still holds)" in result.output

    # Purging again reports the purge; nothing else changes.
    code, out, _ = await incident("purge", iid, "--reason", "again", "--yes")
    assert code == 0 and out.startswith(f"already purged: {line}")


async def test_purge_is_refused_while_running_under_a_hold_and_before_retention_ends(dev_env, cli):
    client = dev_env.client
    async with engine(client) as queue:
        inp = incident_input(PLAYBOOK, fields={"contact_phone": CANARY})
        iid = inp.incident_id
        handle = await start(client, queue, inp)

        async def flushed() -> bool:
            return _record(iid) is not None

        await _until(flushed)
        code, _, err = await incident("purge", iid, "--reason", "too early", "--yes")
        assert code == 1 and err == (
            f"error: refused: incident {iid} is still running: its timers (preservation periods "
            "among them) are active; close it first\n"
        )
        code, _, err = await incident("purge", iid, "--reason", "unconfirmed")  # no --yes
        assert code == 1 and "not confirmed: nothing changed" in err
        # The NCMEC report: a preservation request for a year from its submission.
        report = ExternalEvent(name="evidence", actor="dana", data={"cybertip_report_id": "TIP-9"})
        await actions.send_event(client, iid, report)
        await _close(client, handle)

    submitted = datetime.now(UTC)
    keep_30 = Settings(incident_retention_days=30)
    with pytest.raises(PurgeRefused, match=r"is kept until .* \(CR_INCIDENT_RETENTION_DAYS=30 "):
        await purge_incident(client, iid, "retention", "olga", settings=keep_30)
    later = submitted + timedelta(days=31)
    with pytest.raises(PurgeRefused) as caught:
        await purge_incident(client, iid, "retention", "olga", now=later, settings=keep_30)
    assert str(caught.value).startswith(
        f"incident {iid} is under legal hold: NCMEC CyberTipline report (18 U.S.C. §2258A): 1 "
        f"year (field cybertip_report_id), until {submitted + timedelta(days=365):%Y-%m-%d}"
    )
    code, _, err = await incident("purge", iid, "--reason", "retention", "--yes")
    assert code == 1 and err.startswith(
        f"error: refused: incident {iid} is under legal hold: NCMEC"
    )
    assert purged(iid) is None and verify(iid).ok

    after = submitted + timedelta(days=366)
    purge = await purge_incident(client, iid, "retention", "olga", now=after, settings=keep_30)
    assert (purge.at, purge.keys_destroyed, purged(iid)) == (after, 2, purge)
    with pytest.raises(PurgeRefused, match="a purge needs a reason"):
        await purge_incident(client, "nobody", "  ", "olga")
    with pytest.raises(PurgeRefused, match="no incident nobody in the records"):
        await purge_incident(client, "nobody", "why", "olga")
