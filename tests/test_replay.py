"""Replay: every recorded history under tests/histories replays with today's code, its timeline is
rebuilt from the events alone, and a deliberately non-deterministic copy of the interpreter is
caught with the incident, the event id and a plain-language reason.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import uuid
from pathlib import Path

from audit.cli import ReplayFormat, replay_items, replay_main
from audit.replay import explain, integrity_failures, load_file, rebuild, replay
from workflows.archive import ArchiveIncidentWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# Recorded before lean bookkeeping: their records batches are activities (a lean run's are markers).
WITH_RECORDS_ACTIVITIES = [p for p in HISTORIES if "--lean-" not in p.name]
SOURCE = Path(__file__).parent.parent / "workflows" / "incident.py"


def _items(paths):
    return [item for path in paths for item in load_file(path)]


def test_the_recordings_cover_every_shipped_playbook():
    from playbooks.loader import list_playbooks

    recorded = {p.name.split("--")[0] for p in HISTORIES}
    assert recorded == {lp.playbook.name for lp in list_playbooks()}
    chains = [len(json.loads(p.read_text())["histories"]) for p in HISTORIES]
    assert max(chains) >= 2  # continue-as-new chains are among them


async def test_every_recorded_history_replays_and_rebuilds_its_timeline():
    items = _items(HISTORIES)
    started = time.perf_counter()
    failures = await replay(items)
    elapsed = time.perf_counter() - started
    assert failures == [], "\n".join(
        f"{f.incident_id} event {f.event_id}: {f.reason}" for f in failures
    )
    print(f"\nreplayed {len(items)} runs of {len(HISTORIES)} incidents in {elapsed:.2f} s "
          f"({len(items) / elapsed:.1f} runs/s)")  # fmt: skip
    for path in HISTORIES:
        document = json.loads(path.read_text())
        runs = [i for i in items if i.source == str(path)]
        case = rebuild(runs[0].incident_id, [r.history for r in runs])
        manifest = document["manifest"]
        assert case.playbook_hash == manifest["playbook_hash"].strip() != ""
        assert case.playbook == manifest["playbook"] == path.name.split("--")[0]
        assert [r.run_id for r in case.runs] == [r["run_id"] for r in manifest["runs"]]
        assert case.runs[-1].status == "completed"
        seqs = [e.seq for e in case.timeline]
        assert seqs == list(range(1, len(seqs) + 1)), path.name  # nothing lost across runs
        kinds = [e.kind for e in case.timeline]
        assert kinds[0] == "opened" and "acknowledged" in kinds and kinds.count("closed") == 1
        assert any(m.name == "close" for m in case.messages)


def test_manifest_hashes_hold_and_a_tampered_history_is_refused(tmp_path):
    items = _items(HISTORIES[:1])
    assert integrity_failures(items) == []
    document = json.loads(HISTORIES[0].read_text())
    events = document["histories"][0]["history"]["events"]
    events[1]["eventTime"] = "2020-01-01T00:00:00Z"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    [failure] = integrity_failures(load_file(forged))
    assert "altered after export" in failure.reason


RUN_DEF = re.compile(r"\n    async def run\(self[^\n]*:\n")


def _copy_with(tmp_path, monkeypatch, old: str | re.Pattern[str], new: str):
    """A copy of today's interpreter with one deliberate change, importable by the sandbox.

    ``old`` as a pattern (the ``run`` definition) gets ``new`` as its first statement.
    """
    source = SOURCE.read_text()
    if isinstance(old, re.Pattern):
        found = old.search(source)
        assert found is not None
        changed = source[: found.end()] + f"        {new}\n" + source[found.end() :]
    else:
        assert source.count(old) == 1, old
        changed = source.replace(old, new)
    name = f"incident_copy_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(changed)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name).IncidentWorkflow


def _first_event(items, attribute: str, **match) -> int:
    for event in items[0].history.events:
        if event.HasField(attribute):
            attrs = getattr(event, attribute)
            if all(getattr(attrs, k).name == v for k, v in match.items()):
                return event.event_id
    raise AssertionError(f"no {attribute} in the history")


async def test_an_extra_timer_in_a_copy_is_caught_with_the_event_id(tmp_path, monkeypatch):
    changed = _copy_with(tmp_path, monkeypatch, RUN_DEF, "await workflow.sleep(5)")
    items = _items(HISTORIES[:1])[:1]
    [failure] = await replay(items, [changed, ArchiveIncidentWorkflow])
    first_command = _first_event(items, "activity_task_scheduled_event_attributes")
    assert failure.incident_id == items[0].incident_id
    assert failure.event_id == first_command
    assert failure.reason.startswith(
        "the history has an activity task scheduled event here that today's code does not produce"
    )
    code, text = await replay_items(items, ReplayFormat.text, [changed, ArchiveIncidentWorkflow])
    assert code == 1
    assert f"NON-DETERMINISM in incident {items[0].incident_id}" in text
    assert f"at event {first_command}: " in text


async def test_a_renamed_activity_is_caught_with_the_event_id(monkeypatch):
    from workflows.incident import IncidentWorkflow

    # The records call lives in workflows/outbound.py, a module passed through to the sandbox:
    # renaming its activity there renames it for the interpreter.
    monkeypatch.setattr("workflows.outbound.RECORDS_ACTIVITY", "records.append_v2")
    items = _items(WITH_RECORDS_ACTIVITIES[:1])[:1]
    [failure] = await replay(items, [IncidentWorkflow, ArchiveIncidentWorkflow])
    expected = _first_event(
        items, "activity_task_scheduled_event_attributes", activity_type="records.append"
    )
    assert failure.event_id == expected
    assert "records.append" in failure.reason and "records.append_v2" in failure.reason


def test_explain_names_the_event_and_the_reason():
    message = (
        'Failure { message: "[TMPRL1100] Nondeterminism error: No command scheduled for event '
        'HistoryEvent(id: 42, TimerStarted)" }'
    )
    event_id, event_type, reason = explain(message)
    assert (event_id, event_type) == (42, "TimerStarted")
    assert reason.startswith("the history has a timer started event here that today's code does")


def test_replay_command_writes_markdown_and_json_case_files(tmp_path, capsys):
    path = next(p for p in HISTORIES if p.name.startswith("emergency-disclosure"))
    md = tmp_path / "case.md"
    assert replay_main([path], False, ReplayFormat.md, md) == 0
    text = md.read_text()
    manifest = json.loads(path.read_text())["manifest"]
    assert text.startswith(f"# Incident {manifest['incident_id']}")
    assert f"hash `{manifest['playbook_hash']}`" in text
    assert "| When (UTC) | Seq | What | Who | Step | SLA | Detail |" in text
    assert "## Decisions and commands received" in text
    assert replay_main([path], False, ReplayFormat.json, None) == 0
    [case] = json.loads(capsys.readouterr().out)
    assert case["playbook_hash"] == manifest["playbook_hash"]
    assert case["failures"] == [] and case["timeline"][0]["kind"] == "opened"


def test_nothing_to_replay_is_an_error(capsys):
    assert replay_main([], False, ReplayFormat.text, None) == 2
    assert "nothing to replay" in capsys.readouterr().err


async def test_a_bare_sdk_history_file_also_replays(tmp_path):
    """A history saved by ``temporal workflow show --output json`` or the UI, without manifest."""
    document = json.loads(HISTORIES[0].read_text())
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(document["histories"][0]["history"]))
    items = load_file(bare)
    assert [i.incident_id for i in items] == [document["manifest"]["incident_id"]]
    code, text = await replay_items(items, ReplayFormat.text)
    assert code == 0 and "Replay with today's code: OK" in text
