"""The handover summary, from the records alone: every sentence's facts are in the rows it names
(the projection, the SLA outcomes, the audit log entries, opened), and no sentence says anything
but its template's words and those facts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlmodel import Session, select

from assist import summary
from assist.summary import Handover, handover, when
from records.chain import write_batch
from records.sealed import opened_columns
from records.tables import AuditRow, IncidentRecord, SlaOutcome, records_engine
from tests.records_db import at, batch, clock, entry, records_url, state

pytestmark = pytest.mark.usefixtures(records_url.__name__)


def _incident() -> None:
    tl = [
        entry(1, 0, "casey", "opened", role="ic", detail="Emergency request from Springfield PD",
              data={"playbook": "emergency-disclosure", "severity": "sev0"}),
        entry(2, 2, "casey", "acknowledged", role="ic"),
        entry(3, 3, "system", "step_started", step="open-case", role="lers",
              detail="Log the request and open the Salesforce case"),
        entry(4, 4, "system", "step_completed", step="open-case", detail="case 500x"),
        entry(5, 5, "system", "step_started", step="legal-determination", role="legal",
              detail="Good-faith emergency determination"),
        entry(6, 5, "system", "approval_requested", step="legal-determination", role="legal",
              detail="Approve only if ..."),
        entry(7, 6, "system", "step_started", step="page-lers", role="lers",
              detail="Page the law-enforcement response on-call"),
        entry(8, 7, "system", "step_failed", step="page-lers", detail="PagerDutyError 500"),
        entry(9, 8, "mallory", "message_refused", detail="unsigned"),
        entry(10, 9, "system", "step_started", step="notice-delay", role="system",
              detail="Wait 30 days"),
        entry(11, 9, "system", "timer_set", step="notice-delay",
              detail="fires at 2026-04-01T09:09:00+00:00"),
        entry(12, 61, "system", "escalation", step="legal-determination", detail="{}"),
    ]  # fmt: skip
    clocks = {
        "incident.resolve": clock("incident.resolve", 60 * 24 * 33),
        "legal-determination": clock("legal-determination", 60, breached=60),
        "open-case": clock("open-case", 15, stopped=1),
        "incident.acknowledge": clock("incident.acknowledge", 5, stopped=2),
    }
    snap = state(tl, severity="sev0", status="acknowledged", acknowledged_at=at(2),
                 owner="casey", clocks=clocks)  # fmt: skip
    write_batch(batch("ED-1", tl, snap, playbook="emergency-disclosure"))


def _row_values(source: str) -> set[str]:
    """Every value, as a summary writes it, of the records row ``source`` names."""
    table, _, key = source.partition(":")
    with Session(records_engine()) as s:
        if table == "incident_records":
            r = s.get(IncidentRecord, key)
            assert r is not None
            return {r.incident_id, r.playbook, r.severity, r.status.replace("_", " "), r.owner,
                    when(r.opened_at), when(r.acknowledged_at), when(r.closed_at)}  # fmt: skip
        if table == "sla_outcomes":
            c = s.exec(select(SlaOutcome).where(SlaOutcome.incident_id == "ED-1",
                                                SlaOutcome.clock == key)).one()  # fmt: skip
            return {c.clock, when(c.due_at), c.state.replace("_", " "), when(c.breached_at)}
        row = s.exec(select(AuditRow).where(AuditRow.incident_id == "ED-1",
                                            AuditRow.seq == int(key))).one()  # fmt: skip
        detail, _ = opened_columns(row)
        return {row.action, row.actor, row.role or "", row.step or "", detail, when(row.at)}


TEMPLATE_WORDS = set(re.findall(r"[A-Za-z()]+", Path(summary.__file__).read_text()))


def _check_against_records(h: Handover) -> None:
    for sentence in h.sentences:
        for name, value in sentence.facts.items():
            if name == "count":  # a count of the rows it cites
                assert int(value) == len(sentence.sources), sentence
                continue
            found = set().union(*(_row_values(src) for src in sentence.sources))
            if name in ("roles", "owner") and value in ("an approver", "the commander"):
                continue
            assert value in found, (sentence.text, name, value)
        rest = sentence.text
        for value in sorted(sentence.facts.values(), key=len, reverse=True):
            rest = rest.replace(value, " ")
        assert set(re.findall(r"[A-Za-z()]+", rest)) <= TEMPLATE_WORDS, (sentence.text, rest)


def test_every_sentence_is_made_of_facts_from_the_rows_it_names():
    _incident()
    h = handover("ED-1")
    _check_against_records(h)
    text = h.text
    assert text.startswith("Incident ED-1 (emergency-disclosure, sev0) is acknowledged, owned by "
                           "casey, opened at 2026-03-02 09:00 UTC, acknowledged at")  # fmt: skip
    assert ("Step legal-determination (Good-faith emergency determination) waits for a decision "
            "by legal since 2026-03-02 09:05 UTC.") in text  # fmt: skip
    assert "Step notice-delay (Wait 30 days) waits on a timer: fires at 2026-04-01" in text
    assert "Step page-lers failed (PagerDutyError 500) and waits for a retry or a skip." in text
    assert "The legal-determination clock breached at 2026-03-02 10:00 UTC" in text
    assert "1 message(s) were refused" in text and "1 escalation(s) fired" in text
    assert "open-case clock" not in text  # stopped clocks are not deadlines
    # nearest deadlines first: the breached decision clock, then the 33-day resolve clock
    deadlines = [s.facts["clock"] for s in h.sentences if "is due at" in s.text]
    assert deadlines == ["legal-determination", "incident.resolve"]
    assert handover("ED-1").text == text  # deterministic


def test_an_unknown_incident_is_an_error_naming_it():
    with pytest.raises(summary.UnknownIncident, match="no incident NOPE"):
        handover("NOPE")
