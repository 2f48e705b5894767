"""Triage suggestions from the local model: known-answer accuracy on held-out generated cases,
explanations, fields, the versioned model store, and training from closed incidents in the
records (sealed summaries opened as the records' readers do)."""

from __future__ import annotations

import pickle

import pytest

from assist import store
from assist.evaluate import accuracy_table, confusion_table, evaluate
from assist.extract import extract_fields
from assist.model import SEED_VERSION, seed_model, train
from assist.providers import LocalProvider, installed_playbooks
from assist.seed import generated, split
from assist.training import closed_examples
from records.chain import write_batch
from tests.records_db import batch, entry, records_url, state

PLAYBOOKS = installed_playbooks()


@pytest.fixture(scope="module")
def held_out_model():
    train_set, held_out = split(generated())
    return train(train_set), held_out


def test_generated_cases_are_deterministic_and_split_without_overlap():
    assert generated(5) == generated(5)
    train_set, held_out = split(generated())
    assert len(held_out) == 120 and len(train_set) == 360
    assert not {e.text for e in train_set} & {e.text for e in held_out}
    assert {e.playbook for e in held_out} == set(PLAYBOOKS)


def test_known_answer_accuracy_on_held_out_cases(held_out_model):
    model, held_out = held_out_model
    result = evaluate(LocalProvider(model), held_out, PLAYBOOKS)
    assert result.accuracy() >= 0.95
    assert result.severity_accuracy() >= 0.85
    for name in PLAYBOOKS:
        assert result.accuracy(name) >= 0.8, (name, confusion_table(result))
    table = accuracy_table([result])
    assert "| emergency-disclosure | 15 |" in table and "**all**" in table


def test_accuracy_on_hand_written_cases_worded_unlike_the_generator(held_out_model):
    """The seed model learnt the generator's wording: on cases written otherwise it does far
    worse (the figure in the report). Its suggestions are a start, not an answer: the team
    retrains from its own closed incidents and measures again."""
    from assist.cases import hand_written

    model, _ = held_out_model
    cases = hand_written()
    assert len(cases) == 40 and {c.playbook for c in cases} == set(PLAYBOOKS)
    result = evaluate(LocalProvider(model), cases, PLAYBOOKS)
    assert 0.5 <= result.accuracy() < 0.95  # deterministic: 57.5 % with the seed split


def test_a_suggestion_explains_itself_with_words_from_the_case(held_out_model):
    model, _ = held_out_model
    text = ("Emergency request from Springfield PD (det.41@police.gov): kidnapping in progress, "
            "location for account acct-7654321 in Berlin")  # fmt: skip
    s = LocalProvider(model).suggest(text, PLAYBOOKS)
    assert s.playbook.value == "emergency-disclosure" and s.severity.value == "sev0"
    assert 0.5 < s.playbook.confidence <= 1.0
    assert s.playbook.words
    assert all(part in text.lower() for w in s.playbook.words for part in w.split())
    assert {k: v.value for k, v in s.fields.items()} == {
        "requester_agency": "Springfield PD", "requester_email": "det.41@police.gov",
        "account_id": "acct-7654321", "jurisdiction": "eu",
    }  # fmt: skip
    assert s.fields["jurisdiction"].words == ["Berlin"]
    assert s.provider == "local" and s.model == "tfidf-logreg" and s.version == model.version
    assert [a.value for a in s.alternatives] != [s.playbook.value]


def test_extracted_fields_match_the_known_answers():
    wrong = []
    for ex in generated(10):
        got = {g.name: g.value for g in extract_fields(PLAYBOOKS[ex.playbook].fields, ex.text)}
        wrong += [(ex.playbook, k, v, got.get(k)) for k, v in ex.fields.items() if got.get(k) != v]
    assert wrong == []


def test_extractors_keep_only_values_the_field_accepts():
    fields = PLAYBOOKS["legal-process"].fields
    got = {g.name: g.value for g in extract_fields(fields, "subpoena, return date 2026-13-45")}
    assert got == {"process_type": "subpoena"}  # not a date, not an id


def test_the_seed_model_is_the_same_everywhere():
    a, b = seed_model(), seed_model()
    assert a.version == b.version == SEED_VERSION
    assert a.training_hash == b.training_hash


def test_a_trained_model_is_saved_versioned_and_loaded(tmp_path, held_out_model):
    assert store.load(tmp_path).version == SEED_VERSION  # nothing trained yet: the seed
    model, _ = held_out_model
    path = store.save(model, tmp_path)
    assert path.name == f"triage-{model.version}.pkl" and path.stat().st_mode & 0o077 == 0
    assert store.current_version(tmp_path) == model.version
    assert store.load(tmp_path).version == model.version
    assert pickle.loads(path.read_bytes()).training_hash == model.training_hash


def _close(incident_id: str, playbook: str, severity: str, summary: str) -> None:
    opened = entry(0, 0, "alice", "opened", detail=summary,
                   data={"playbook": playbook, "severity": severity})  # fmt: skip
    closed = entry(1, 30, "alice", "closed", detail="done")
    snap = state([opened, closed], status="closed", severity=severity)
    write_batch(batch(incident_id, [opened, closed], snap, playbook=playbook))


@pytest.mark.usefixtures(records_url.__name__)
def test_training_reads_closed_incidents_from_the_records():
    cases = generated(3)
    for n, ex in enumerate(cases):
        _close(f"inc-{n}", ex.playbook, ex.severity, ex.text)
    open_one = entry(0, 0, "bob", "opened", detail="still open", data={"severity": "sev1"})
    write_batch(batch("inc-open", [open_one], state([open_one])))
    examples = closed_examples()
    assert len(examples) == len(cases)
    assert {(e.text, e.playbook, e.severity) for e in examples} == {
        (e.text, e.playbook, e.severity) for e in cases
    }
    model = train(examples)
    assert model.trained_on == len(cases) and model.version.startswith(model.training_hash[:12])


def test_triage_eval_on_generated_cases_and_train_refusal(capsys):
    import json

    import starter

    assert starter.run(["triage-eval", "--generated", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held_out"] == 120 and report["providers"][0]["accuracy"] >= 0.95
    assert {r["true"] for r in report["providers"][0]["confusion"]} == set(PLAYBOOKS)
    assert starter.run(["triage-eval", "--generated", "--provider", "oracle"]) == 2
    assert "must be local or chat" in capsys.readouterr().err


@pytest.mark.usefixtures(records_url.__name__)
def test_triage_train_needs_enough_closed_incidents(capsys):
    import starter

    assert starter.run(["triage-train"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0 readable closed incidents" in err


@pytest.mark.usefixtures(records_url.__name__)
def test_retrained_from_closed_incidents_versioned_and_evaluated(capsys, tmp_path, monkeypatch):
    import json

    import starter
    from settings import get_settings

    monkeypatch.setenv("CR_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    cases = generated(4)
    for n, ex in enumerate(cases):
        _close(f"tr-{n}", ex.playbook, ex.severity, ex.text)
    assert starter.run(["triage-train", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["trained_on"] == len(cases) and len(trained["playbooks"]) == 8
    assert store.current_version(tmp_path) == trained["version"]
    assert LocalProvider(data_dir=tmp_path).model.version == trained["version"]
    assert starter.run(["triage-eval", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["source"] == "closed incidents" and report["held_out"] == 8
    assert report["providers"][0]["cases"] == 8 and report["recorded"] == {}
