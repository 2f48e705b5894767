"""An insider with the records database cannot rewrite the audit log unseen (issue 10).

Whoever can write the database can recompute every hash with the project's own ``row_digest`` and
rewrite ``audit_head``: the chain alone then holds again. The signed checkpoints written outside the
database by every ``write_batch`` (``records/checkpoints.py``) still name the old hashes, so an
edited-and-rehashed row, a deleted tail and a reordered pair are each detected; an incident the log
never saw is an error; and an exported bundle whose rows or histories were altered is reported as
tampering, not as non-determinism.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select
from temporalio.client import WorkflowHistory
from typer.testing import CliRunner

from audit.bundle import tamper_failures
from audit.cli import TAMPERED, ReplayFormat, audit_app, replay_main
from audit.export import export_incident
from audit.replay import load_document, load_file
from audit.verify import verify
from connection import DATA_CONVERTER
from records import archive, audit_key
from records.chain import row_digest, row_from_json, write_batch
from records.checkpoints import Checkpoint, checkpoint_file, read
from records.tables import GENESIS, AuditHead, AuditRow, records_engine
from tests.records_db import batch, both_backends, entry, records_url, state
from workflows.models import RecordBatch

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
runner = CliRunner()
RECORDING = Path(__file__).parent / "histories" / "account-takeover--s1.json"


def _seed() -> None:
    """Rows 1-6, one checkpoint per batch: a a | b | a | b | a."""
    a = [entry(i, i, "alice", "note", detail=f"a{i}") for i in range(4)]
    b = [entry(i, i, "bob", "note", detail=f"b{i}") for i in range(2)]
    for item in (
        batch("a", a[0:2], state(a[0:2])),
        batch("b", b[0:1], state(b[0:1])),
        batch("a", a[2:3], state(a[0:3])),
        batch("b", b[1:2], state(b)),
        batch("a", a[3:4], state(a)),
    ):
        write_batch(item)


def _sql(statement: str) -> None:
    with records_engine().begin() as conn:
        conn.execute(text(statement))


def _rehash() -> None:
    """The insider's rewrite: every row's links and hash recomputed with the project's own
    function, in log order, and the head pointed at the new last row."""
    with Session(records_engine()) as s:
        prev_log, tips = GENESIS, {}
        for row in s.exec(select(AuditRow).order_by(col(AuditRow.id))).all():
            row.prev_log_hash, row.prev_incident_hash = prev_log, tips.get(row.incident_id, GENESIS)
            row.row_hash = row_digest(row)
            prev_log = tips[row.incident_id] = row.row_hash
            s.add(row)
        head = s.get(AuditHead, 1)
        assert head is not None
        head.last_id = s.exec(select(AuditRow.id).order_by(col(AuditRow.id).desc())).first() or 0
        head.last_hash = prev_log
        s.add(head)
        s.commit()


def _chain_alone_holds() -> bool:
    """What verify said before checkpoints: the file moved aside, then put back."""
    path = checkpoint_file()
    aside = path.rename(path.with_suffix(".aside"))
    try:
        return verify().ok
    finally:
        aside.rename(path)


def test_an_intact_log_verifies_with_its_checkpoints():
    _seed()
    cps, notes = read()
    assert [(cp.id, cp.incident_id, cp.seq) for cp in cps] == [
        (2, "a", 1), (3, "b", 0), (4, "a", 2), (5, "b", 1), (6, "a", 3)]  # fmt: skip
    assert notes == [] and checkpoint_file().stat().st_mode & 0o777 == 0o600
    verdict = verify()
    assert verdict.ok and (verdict.rows, verdict.checkpoints, verdict.notes) == (6, 5, ())
    result = runner.invoke(audit_app, ["verify", "b"])
    assert result.exit_code == 0 and "2 signed checkpoints hold (audit key" in result.output


def test_an_edited_row_with_every_later_hash_recomputed_is_detected():
    _seed()
    _sql("UPDATE audit_log SET detail = 'nothing happened' WHERE id = 2")
    _rehash()
    assert _chain_alone_holds()  # the gap this closes
    broken = verify().broken
    assert broken is not None and (broken.row_id, broken.incident_id, broken.seq) == (2, "a", 1)
    assert broken.reason.startswith("rewritten: not the row signed at checkpoint line 1")
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1 and "BROKEN audit log: row 2 (incident a, seq 1): rewritten" in (
        result.output
    )
    assert verify("a").broken.row_id == 2  # type: ignore[union-attr]
    assert verify("b").broken.row_id == 3  # type: ignore[union-attr]  # b's rows were rehashed


def test_a_deleted_tail_is_detected_even_with_the_head_rewritten():
    _seed()
    _sql("DELETE FROM audit_log WHERE id > 4")
    _rehash()
    assert _chain_alone_holds()
    broken = verify().broken
    assert broken is not None and broken.row_id is None
    assert broken.reason == (
        "the log ends at row 4 but checkpoint line 5 signed row 6 (incident a, seq 3): "
        "rows deleted from the end"
    )
    assert runner.invoke(audit_app, ["verify"]).exit_code == 1
    for incident, row_id in (("a", 6), ("b", 5)):
        incident_break = verify(incident).broken
        assert incident_break is not None and incident_break.row_id == row_id
        assert "but gone (deleted or moved)" in incident_break.reason


def test_an_incident_whose_rows_were_all_deleted_is_not_unknown():
    _seed()
    _sql("DELETE FROM audit_log WHERE incident_id = 'b'")
    _sql("UPDATE audit_log SET id = 3 WHERE id = 4")
    _sql("UPDATE audit_log SET id = 4 WHERE id = 6")
    _rehash()
    assert _chain_alone_holds()
    assert not verify().ok
    result = runner.invoke(audit_app, ["verify", "b"])
    assert result.exit_code == 1
    assert "BROKEN incident b: row 3 (incident b, seq 0): signed at checkpoint line 2" in (
        result.output
    )


def test_a_reordered_pair_is_detected():
    _seed()
    _sql("UPDATE audit_log SET id = 100 WHERE id = 3")
    _sql("UPDATE audit_log SET id = 3 WHERE id = 4")
    _sql("UPDATE audit_log SET id = 4 WHERE id = 100")
    _rehash()
    assert _chain_alone_holds()
    broken = verify().broken
    assert broken is not None and (broken.row_id, broken.incident_id, broken.seq) == (3, "a", 2)
    assert broken.reason.startswith("rewritten: not the row signed at checkpoint line 2")


def test_an_unknown_incident_fails_in_one_line():
    _seed()
    result = runner.invoke(audit_app, ["verify", "nope"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["no audit rows for incident nope"]
    with pytest.raises(LookupError):
        verify("nope")


def test_a_forged_or_foreign_checkpoint_line_is_named():
    _seed()
    path = checkpoint_file()
    lines = path.read_text().splitlines()
    forged = json.loads(lines[2]) | {"hash": "f" * 64}
    path.write_text("\n".join([*lines[:2], json.dumps(forged), *lines[3:]]) + "\n")
    broken = verify().broken
    assert broken is not None and broken.row_id == 4
    assert "checkpoint line 3: its signature by key" in broken.reason
    path.write_text("\n".join(lines) + "\n{torn\n")
    verdict = verify()
    assert verdict.ok and verdict.notes[0].startswith("line 6 of ")
    _sql("UPDATE records_meta SET value = 'other' WHERE key = 'audit_log_id'")
    broken = verify().broken
    assert broken is not None and "belongs to audit log" in broken.reason


def test_rows_written_before_checkpoints_existed_are_noted_then_covered():
    _seed()
    checkpoint_file().unlink()  # a database written before checkpoints existed
    verdict = verify()
    assert verdict.ok and verdict.checkpoints == 0
    assert verdict.notes == (
        "note: 6 rows are not covered by a signed checkpoint (written before checkpoints "
        "existed); the next batch written covers every row before it",
    )
    assert verify("b").notes[0].startswith("note: 2 rows of incident b are not covered by a")
    write_batch(batch("b", [entry(2, 9, "bob", "note")], None))
    assert verify().notes == ()  # the first checkpoint covers every row before it
    assert verify("a").notes[0].startswith("note: 4 rows of incident a")  # through the log only
    _sql("UPDATE audit_log SET detail = 'x' WHERE id = 1")
    _rehash()
    assert _chain_alone_holds()
    broken = verify().broken  # the rewrite reaches the checkpointed row 7
    assert broken is not None and broken.row_id == 7 and broken.reason.startswith("rewritten")


def test_a_checkpoint_that_cannot_be_written_leaves_rows_uncovered_until_the_next():
    _seed()
    path = checkpoint_file()
    path.rename(path.with_suffix(".aside"))
    path.mkdir()  # appending fails: the batch is committed all the same
    write_batch(batch("b", [entry(2, 9, "bob", "note")], None))
    path.rmdir()
    path.with_suffix(".aside").rename(path)
    verdict = verify()
    assert verdict.ok and verdict.notes[0].startswith(
        "note: 1 row after the last checkpoint (row 6) is not"
    )
    write_batch(batch("b", [entry(3, 10, "bob", "note")], None))
    assert verify().notes == ()


# --- exported bundles ---------------------------------------------------------------------------


def _recorded_incident() -> str:
    """The recording's runs archived, and its timeline written to the log as the workflow did."""
    document = json.loads(RECORDING.read_text())
    items = load_document(document, str(RECORDING))
    for item in items:
        for event in item.history.events:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "records.append":
                payloads = list(attrs.input.payloads)
                [recorded] = DATA_CONVERTER.payload_converter.from_payloads(payloads, [RecordBatch])
                write_batch(recorded)
    incident_id = document["manifest"]["incident_id"]
    archive.store(incident_id, [i.history for i in items], [])
    return incident_id


def _edit_history_entry(document: dict, seq: int, detail: str) -> None:
    """Change one timeline entry inside a records.append input, and recompute the manifest's
    sha256 as a careful forger would."""
    for item, run in zip(document["histories"], document["manifest"]["runs"], strict=True):
        for event in item["history"]["events"]:
            attrs = event.get("activityTaskScheduledEventAttributes")
            if not attrs or attrs["activityType"]["name"] != "records.append":
                continue
            payload = attrs["input"]["payloads"][0]
            data = json.loads(base64.b64decode(payload["data"]))
            for e in data["entries"]:
                if e["seq"] == seq:
                    e["detail"] = detail
            payload["data"] = base64.b64encode(json.dumps(data).encode()).decode()
        history = WorkflowHistory.from_json(item["workflow_id"], item["history"])
        run["history_sha256"] = archive.history_sha256(history)


def test_an_exported_bundle_verifies_offline_and_tampering_is_named(tmp_path, capsys):
    incident_id = _recorded_incident()
    document = asyncio.run(export_incident(incident_id, client=None))  # the archive alone
    section = document["audit"]
    assert len(section["rows"]) > 10 and section["checkpoints"] and section["keys"]
    assert tamper_failures(load_document(document, "bundle")) == []

    rows = json.loads(json.dumps(document))  # an audit row edited, its chain recomputed
    edited = rows["audit"]["rows"]
    edited[2]["actor"] = "someone-else"
    prev = edited[1]["row_hash"]
    for row in edited[2:]:
        row["prev_incident_hash"] = prev
        row["row_hash"] = prev = row_digest(row_from_json(row))
    [failure] = tamper_failures(load_document(rows, "bundle"))
    assert failure.kind == "tampered" and "rewritten: not the row signed at a checkpoint" in (
        failure.reason
    )
    forger = audit_key.load_or_create(tmp_path / "forger.json")  # re-signed with their own key
    hashes = {row["id"]: row["row_hash"] for row in edited}
    for cp in rows["audit"]["checkpoints"]:
        unsigned = Checkpoint.from_json(
            cp | {"hash": hashes[cp["id"]], "key_id": forger.signing_id}
        )
        cp.update(unsigned.to_json() | {"sig": forger.sign(unsigned.signed_bytes())})
    rows["audit"]["keys"] = forger.public_b64()
    [failure] = tamper_failures(load_document(rows, "bundle"))
    assert "which the audit key file does not hold" in failure.reason

    history = json.loads(json.dumps(document))  # a history entry edited, its sha256 recomputed
    _edit_history_entry(history, 3, "nothing to see")
    [failure] = tamper_failures(load_document(history, "bundle"))
    assert failure.kind == "tampered"
    assert failure.reason.startswith("the histories' timeline entry seq 3 differs from audit row")

    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(document))
    assert replay_main([path], False, ReplayFormat.text, None) == 0
    path.write_text(json.dumps(history))
    assert replay_main([path], False, ReplayFormat.text, None) == TAMPERED
    out, err = capsys.readouterr()
    assert "replay TAMPERED" in err and "replay FAILED" not in err
    assert "TAMPERED: incident rec-account-takeover-s1" in out and "NON-DETERMINISM" not in out
    assert load_file(path)[0].audit is not None
