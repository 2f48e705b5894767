"""A lean records batch carries a view of the state (``workflows.bookkeeping.records_view``), not
the whole of it: whatever the records derive from a batch must come out the same from the view.

Checked two ways: every state attribute the records code reads survives the view (read from the
source, so a new reader cannot silently get a default), and the transparency row derived from the
view of a decided law-enforcement request equals the one derived from the whole state.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from records.requests import derive
from tests.records_db import entry, state
from workflows.bookkeeping import records_view
from workflows.models import Decision, IncidentState, PendingApproval, SlaClock, StepState

ROOT = Path(__file__).resolve().parent.parent
# Every module that may read a batch's state: the records, and the reports built from them.
READERS = sorted(path for room in ("records", "insights") for path in (ROOT / room).glob("*.py"))
BASE = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def _read_attributes() -> set[str]:
    """``state.x`` and ``snapshot.x`` attributes the records code reads."""
    names: set[str] = set()
    for path in READERS:
        names |= set(re.findall(r"\b(?:state|snapshot)\.(\w+)", path.read_text()))
    return names & set(IncidentState.model_fields)


def _full_state() -> IncidentState:
    """A decided emergency disclosure, with everything the view leaves out filled in too."""
    decided = PendingApproval(
        step_id="legal-determination", roles=["legal"], requested_by="system",
        requested_at=BASE,
        decisions=[Decision(actor="lena", role="legal", reason="imminent harm",
                            decision="approve", at=BASE + timedelta(minutes=30))],
        outcome="approved",
    )  # fmt: skip
    produced = StepState(step_id="produce-data", kind="wait_for", status="completed",
                         started_at=BASE, finished_at=BASE + timedelta(minutes=60))  # fmt: skip
    return state(
        [entry(0, 0, "ic", "opened", base=BASE)],
        base=BASE,
        fields={"jurisdiction": "us", "account_ids": "a1,a2", "requesting_agency": "PD"},
        steps={"produce-data": produced},
        approvals={"legal-determination": decided},
        used_nonces={"n1": BASE},
        roster_seen={"lena": ["legal"]},
        attention={"produce-data": "failed: the vendor refused"},
        acknowledged_at=BASE + timedelta(minutes=5),
        resolution="data produced",
        sla_breached=True,
        runs=2,
        clocks={
            "produce-data": SlaClock(
                name="produce-data",
                started_at=BASE,
                due=timedelta(hours=1),
                running_since=BASE,
                due_at=BASE + timedelta(hours=1),
            )
        },
        status="closed",
        closed_at=BASE + timedelta(hours=2),
    )


def test_every_attribute_the_records_read_survives_the_view():
    full = _full_state()
    view = records_view(full)
    read = _read_attributes()
    assert {"status", "clocks", "approvals", "fields", "steps"} <= read  # the scan finds readers
    for name in read - {"timeline"}:  # a batch's entries travel beside the view
        default = IncidentState.model_fields[name].get_default(call_default_factory=True)
        assert getattr(full, name) != default, f"fill {name} in _full_state to check it"
        assert getattr(view, name) == getattr(full, name), name


def test_the_view_leaves_out_what_the_records_never_read():
    view = records_view(_full_state())
    assert (view.timeline, view.used_nonces, view.roster_seen) == ([], {}, {})


def test_a_transparency_row_is_the_same_from_the_view():
    full = _full_state()
    whole = derive("E1", "emergency-disclosure", full)
    lean = derive("E1", "emergency-disclosure", records_view(full))
    assert whole is not None and lean is not None
    assert lean.model_dump() == whole.model_dump()
