"""A triage suggestion and the person's choice, recorded: the incident's ``triage`` timeline entry
(after ``opened``), a note that does not hold refused and recorded, and the records' view of how
often suggestions were right."""

from __future__ import annotations

from tests.engine_support import has, incident_input, one, playbook, wait_for_timeline
from workflows.triage import TriageNote


def note(**extra: object) -> TriageNote:
    values: dict[str, object] = {
        "provider": "local", "model": "tfidf-logreg", "version": "seed-14",
        "suggested_playbook": "test-playbook", "playbook_confidence": 0.91,
        "suggested_severity": "sev0", "severity_confidence": 0.6,
        "words": ["emergency", "police"], "suggested_fields": {"account_id": "acct-1"},
        "chosen_playbook": "test-playbook", "chosen_severity": "sev1", "chosen_by": "alice",
    }  # fmt: skip
    values.update(extra)
    return TriageNote.model_validate(values)


STEPS = [{"id": "one", "kind": "action", "activity": "notify.slack"}]


async def test_the_suggestion_and_the_choice_are_the_entry_after_opened(h):
    handle = await h.open(incident_input(playbook(STEPS), triage=note()))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    assert [e.kind for e in tl[:2]] == ["opened", "triage"]
    entry = one(tl, "triage")
    assert entry.actor == "alice"
    assert entry.data["suggested_severity"] == "sev0" and entry.data["chosen_severity"] == "sev1"
    assert entry.data["accepted"] == "no" and entry.data["field.account_id"] == "acct-1"
    assert "suggested test-playbook (91%) sev0 (60%)" in entry.detail
    assert entry.detail.endswith("alice chose test-playbook sev1 (changed)")


async def test_a_note_that_is_not_the_incident_is_refused_and_the_incident_runs(h):
    handle = await h.open(incident_input(playbook(STEPS), triage=note(chosen_playbook="other")))
    tl = await wait_for_timeline(handle, has("playbook_complete"))
    refused = one(tl, "message_refused")
    assert refused.data["code"] == "invalid_triage" and "other" in refused.detail
    assert not [e for e in tl if e.kind == "triage"]


async def test_a_triage_on_an_open_incident_is_validated_before_it_reaches_history(h):
    from tests.engine_support import refusal
    from workflows.assisted import TriageRequest
    from workflows.incident import IncidentWorkflow

    pb = playbook([{"id": "w", "kind": "wait_for", "event": "done"}])
    handle = await h.open(incident_input(pb))
    await wait_for_timeline(handle, has("step_started", "w"))
    bad = TriageRequest(actor="alice", note=note(chosen_playbook="other"))
    assert await refusal(handle.execute_update(IncidentWorkflow.record_triage, bad)) == (
        "invalid_triage"
    )
    forged = TriageRequest(actor="mallory", note=note())  # a choice in someone else's name
    assert await refusal(handle.execute_update(IncidentWorkflow.record_triage, forged)) == (
        "invalid_triage"
    )
    entry = await handle.execute_update(IncidentWorkflow.record_triage,
                                        TriageRequest(actor="alice", note=note()))  # fmt: skip
    assert entry.kind == "triage" and entry.data["chosen_severity"] == "sev1"
    tl = await handle.query(IncidentWorkflow.timeline)
    assert [e.kind for e in tl].count("triage") == 1 and "message_refused" not in [
        e.kind for e in tl
    ]


async def test_histories_with_triage_entries_replay(h):
    """Fresh histories of the new paths (the triage entry at open behind its patch, the
    record_triage Update) replay with today's code."""
    from temporalio.worker import Replayer

    from connection import DATA_CONVERTER
    from tests.engine_support import commander
    from workflows.assisted import TriageRequest
    from workflows.incident import IncidentWorkflow

    pb = playbook([{"id": "w", "kind": "wait_for", "event": "done"}])
    handle = await h.open(incident_input(pb, triage=note()))
    await wait_for_timeline(handle, has("step_started", "w"))
    await handle.execute_update(IncidentWorkflow.record_triage,
                                TriageRequest(actor="alice", note=note()))  # fmt: skip
    await handle.execute_update(IncidentWorkflow.close, commander(reason="done"))
    await handle.result()
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=DATA_CONVERTER)
    await replayer.replay_workflow(await handle.fetch_history())
