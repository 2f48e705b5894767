"""The records' sealed columns (``records/sealed.py``) and the legal-hold rules of a purge
(``records/holds.py``), without a Temporal server: what is sealed and what stays in clear, rows from
before sealing, a sealed value moved or altered, master key rotation, a decrypted export's rows,
and when a hold ends.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, col, select

from audit.bundle import audit_section, check_section, rows_in_clear
from audit.verify import verify
from encryption import master
from encryption.codec import Keys, shared_keys
from encryption.keystore import DataKeyDestroyed, KeyStore
from records.chain import write_batch
from records.holds import active_holds, field_history
from records.sealed import (
    SealedColumnError,
    is_sealed,
    opened,
    opened_columns,
    opened_resolution,
)
from records.tables import AuditRow, IncidentRecord, records_engine
from roster import journal
from settings import get_settings
from tests.records_db import T0, at, batch, both_backends, entry, records_url, state
from workflows.names import workflow_id_for

pytestmark = [both_backends, pytest.mark.usefixtures(records_url.__name__)]
SECRET = "Jane Roe, 12 Elm St"


def _rows(incident_id: str) -> list[AuditRow]:
    with Session(records_engine()) as s:
        query = select(AuditRow).where(AuditRow.incident_id == incident_id)
        return list(s.exec(query.order_by(col(AuditRow.id))).all())


def _write(incident_id: str, *details: str, start: int = 0, **kw) -> None:
    entries = [
        entry(start + n, start + n, "alice", "note", detail=d, data={"who": d})
        for n, d in enumerate(details)
    ]
    write_batch(batch(incident_id, entries, state(entries, resolution=details[-1])), **kw)


def test_an_incidents_text_is_sealed_and_its_kinds_ids_and_times_are_not():
    _write("s-1", SECRET)
    [row] = _rows("s-1")
    assert is_sealed(row.detail) and is_sealed(row.data)
    assert SECRET not in row.detail + row.data
    assert (row.action, row.actor, row.seq, row.at) == ("note", "alice", 0, T0)
    assert opened_columns(row) == (SECRET, json.dumps({"who": SECRET}, separators=(",", ":")))
    _, store = shared_keys().get()
    key_id = store.data_key(workflow_id_for("s-1")).key_id
    assert row.detail.startswith(f"sealed:v1:{key_id}:")
    with Session(records_engine()) as s:
        record = s.get(IncidentRecord, "s-1")
    assert record is not None and is_sealed(record.resolution)
    assert opened_resolution(record) == SECRET and record.owner == "alice"
    assert verify().ok and verify("s-1").ok


def test_rows_written_before_sealing_read_as_they_are_and_the_chain_holds(monkeypatch):
    _write("s-2", "before sealing", clear=True)  # as every row was before this change
    monkeypatch.setenv("CR_PAYLOAD_ENCRYPTION", "false")
    get_settings.cache_clear()
    _write("s-2", "encryption switched off", start=1)
    monkeypatch.delenv("CR_PAYLOAD_ENCRYPTION")
    get_settings.cache_clear()
    _write("s-2", SECRET, start=2)
    rows = _rows("s-2")
    assert [is_sealed(r.detail) for r in rows] == [False, False, True]
    assert [opened(r).detail for r in rows] == ["before sealing", "encryption switched off", SECRET]
    assert verify().ok and verify("s-2").ok


def test_journal_streams_stay_in_clear():
    journal.record("admin", "person lena added (Lena)")
    [row] = journal.entries()
    assert (row.detail, row.data) == ("person lena added (Lena)", "{}")


def test_a_sealed_value_moved_to_another_row_does_not_open_and_breaks_the_chain():
    _write("s-3", "first", "second")
    first, second = _rows("s-3")
    with records_engine().begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET detail = :d WHERE id = :i"),
            {"d": first.detail, "i": second.id},
        )
    [_, moved] = _rows("s-3")
    with pytest.raises(SealedColumnError, match="moved from another row"):
        opened(moved)
    broken = verify("s-3").broken
    assert broken is not None and broken.row_id == second.id


def test_master_key_rotation_keeps_old_records_readable():
    _write("s-4", "sealed before the rotation")
    ring, store = shared_keys().get()
    ring.rotate()
    _write("s-5", "sealed after the rotation")
    assert store.rewrap() >= 1  # the old data keys now wrapped by the newest master key
    fresh_ring = master.load_or_create(get_settings().data_dir)  # another process, later
    fresh = Keys.of(fresh_ring, KeyStore(fresh_ring, store.url, cache_seconds=0))
    [old], [new] = _rows("s-4"), _rows("s-5")
    assert opened(old, keys=fresh).detail == "sealed before the rotation"
    assert opened(new, keys=fresh).detail == "sealed after the rotation"


def test_a_destroyed_key_shreds_the_rows_and_nothing_else(records_url):
    # The session's keystore outlives this test's database: an id of its own on each backend.
    victim = "s-6-pg" if records_url.startswith("postgresql") else "s-6-sqlite"
    _write(victim, SECRET)
    _write("s-7", "a bystander")
    _, store = shared_keys().get()
    store.destroy(workflow_id_for(victim))
    with pytest.raises(DataKeyDestroyed, match="crypto-shredded"):
        opened(_rows(victim)[0])
    assert opened(_rows("s-7")[0]).detail == "a bystander"
    assert verify().ok and verify(victim).ok  # the chain is over the sealed text
    with pytest.raises(DataKeyDestroyed):  # nothing is ever sealed under it again
        _write(victim, "more", start=1)


def test_a_decrypted_exports_rows_are_held_against_their_sealed_text():
    _write("s-8", SECRET, "second")
    section = audit_section("s-8", decrypt=True)
    assert [r["opened"]["detail"] for r in section["rows"]] == [SECRET, "second"]
    problems, _, rows = check_section(section, "s-8")
    assert problems == []
    clear, problems = rows_in_clear(section, rows)
    assert problems == [] and [r.detail for r in clear] == [SECRET, "second"]
    section["rows"][1]["opened"]["detail"] = "something else"  # the hashes still hold ...
    assert check_section(section, "s-8")[0] == []
    _, problems = rows_in_clear(section, rows)  # ... but not against the sealed text
    assert problems == [
        f"audit row {rows[1].id}'s opened detail or data differs from its sealed columns: the "
        "decrypted export was altered"
    ]


# --- legal holds ---------------------------------------------------------------------------------


def _event(seq: int, days: float, name: str, **data: str) -> AuditRow:
    return AuditRow(id=seq, incident_id="h", seq=seq, at=at(days * 24 * 60), actor="dana",
                    action="event", detail=name, data=json.dumps(data), workflow_id="w",
                    run_id="r", playbook="p", playbook_hash="", prev_incident_hash="",
                    prev_log_hash="", row_hash="")  # fmt: skip


def _holds(rows: list[AuditRow], days: float, fields: dict[str, str] | None = None) -> list[str]:
    return active_holds(field_history(T0, fields or {}, rows), rows, T0 + timedelta(days=days))


def test_a_preservation_hold_runs_90_days_plus_a_renewal_unless_legal_releases_it():
    taken = [_event(1, 1, "legal_hold_taken", snapshot_ref="SNAP-1")]
    assert _holds(taken, 90) == [
        "§2703(f) preservation: 90 days (field snapshot_ref), until 2026-06-01 09:00 UTC"
    ]
    assert _holds(taken, 92) == []
    renewed = [*taken, _event(2, 80, "preservation_renewed", requester_reference="R-2")]
    assert _holds(renewed, 170) and _holds(renewed, 182) == []
    released = [*taken, _event(3, 95, "x")]
    released[-1].action, released[-1].step = "step_completed", "release-task"
    assert _holds([*renewed, released[-1]], 96) == []
    assert _holds([], 10, {"snapshot_ref": "SNAP-0"})  # a hold taken before the incident opened


def test_a_cybertip_report_holds_a_year_and_a_legal_hold_field_until_released():
    report = [_event(1, 2, "cybertip_submitted", cybertip_report_id="TIP-1")]
    assert _holds(report, 366) and _holds(report, 368) == []
    assert _holds([], 5000, {"legal_hold": "litigation L-7"}) == [
        "legal hold (field legal_hold = 'litigation L-7')"
    ]
    lifted = [_event(1, 3, "hold_lifted", legal_hold="released")]
    assert _holds(lifted, 4, {"legal_hold": "litigation L-7"}) == []
