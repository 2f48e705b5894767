"""``incident audit verify``: an intact chain passes; an edited, deleted or reordered row is named."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session
from typer.testing import CliRunner

from audit.cli import audit_app
from audit.verify import verify
from records.chain import row_digest, write_batch
from records.checkpoints import checkpoint_file
from records.tables import AuditRow, records_engine
from tests.records_db import batch, both_backends, entry, records_url, state

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
runner = CliRunner()


def _seed() -> None:
    """Rows 1-6: incident a (seq 0-3) and b (seq 0-1) interleaved as a, a, b, a, b, a."""
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


def test_an_intact_log_verifies_and_the_cli_exits_0():
    _seed()
    verdict = verify()
    assert verdict.ok and verdict.rows == 6
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 0, result.output
    assert f"OK audit log: 6 rows, chain intact; log head {verdict.head_hash}" in result.output
    result = runner.invoke(audit_app, ["verify", "a"])
    assert result.exit_code == 0 and "OK incident a: 4 rows" in result.output


def test_an_edited_row_is_named_and_the_cli_exits_1():
    _seed()
    _sql("UPDATE audit_log SET detail = 'nothing happened' WHERE id = 4")
    broken = verify().broken
    assert broken is not None
    assert (broken.row_id, broken.incident_id, broken.seq) == (4, "a", 2)
    assert broken.reason.startswith("edited")
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1
    assert "BROKEN audit log: row 4 (incident a, seq 2): edited" in result.output
    assert "3 rows verified before the break" in result.output
    assert verify("a").broken.row_id == 4  # type: ignore[union-attr]
    assert verify("b").ok  # the other incident's own chain still holds


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link():
    _seed()
    with Session(records_engine()) as s:
        row = s.get(AuditRow, 4)
        assert row is not None
        row.detail = "nothing happened"
        row.row_hash = row_digest(row)
        s.add(row)
        s.commit()
    broken = verify().broken  # the row's own checkpoint names it (tests/test_audit_tamper.py)
    assert broken is not None and broken.row_id == 4 and broken.reason.startswith("rewritten")
    checkpoint_file().unlink()  # without checkpoints, the chain alone still names the next link
    broken = verify().broken
    assert broken is not None and broken.row_id == 5
    assert broken.reason == "does not follow row 4 of the log (that row was rewritten or moved)"
    incident_break = verify("a").broken
    assert incident_break is not None and incident_break.row_id == 5  # a's successor link


def test_a_deleted_row_is_named():
    _seed()
    _sql("DELETE FROM audit_log WHERE id = 3")
    broken = verify().broken
    assert broken is not None and (broken.row_id, broken.incident_id) == (4, "a")
    assert broken.reason == "row 3 before it is missing (deleted)"
    assert runner.invoke(audit_app, ["verify"]).exit_code == 1
    incident_break = verify("b").broken  # b lost its first row, which its checkpoint names
    assert incident_break is not None and (incident_break.row_id, incident_break.seq) == (3, 0)
    assert incident_break.reason == "signed at checkpoint line 2 but gone (deleted or moved)"
    checkpoint_file().unlink()  # without checkpoints: b's next row no longer links
    incident_break = verify("b").broken
    assert incident_break is not None and incident_break.row_id == 5
    assert "previous row of its incident" in incident_break.reason


def test_deleting_the_last_row_is_caught_by_the_head():
    _seed()
    _sql("DELETE FROM audit_log WHERE id = 6")
    broken = verify().broken
    assert broken is not None and broken.row_id is None
    assert broken.reason.startswith("the log ends at row 5 but its head records row 6")
    assert runner.invoke(audit_app, ["verify"]).exit_code == 1


def test_a_reordered_row_is_named():
    _seed()
    _sql("UPDATE audit_log SET id = 100 WHERE id = 3")
    _sql("UPDATE audit_log SET id = 3 WHERE id = 4")
    _sql("UPDATE audit_log SET id = 4 WHERE id = 100")
    broken = verify().broken
    assert broken is not None and (broken.row_id, broken.incident_id, broken.seq) == (3, "a", 2)
    assert broken.reason.startswith("moved or replaced")
    result = runner.invoke(audit_app, ["verify"])
    assert result.exit_code == 1 and "row 3 (incident a, seq 2): moved or replaced" in result.output
