"""Intake with triage: a case arriving is opened by its routing rules as before, with the local
model's suggestion handed to the opener (and recorded beside the rules' choice by the real one);
a slow or failing provider costs the webhook at most its budget and opens the case all the same."""

from __future__ import annotations

import threading
import time

import pytest

from assist.providers import LocalProvider
from assist.recording import note_for
from assist.suggestion import Scored, Suggestion
from intake import app as intake
from sandbox.server import free_port
from settings import get_settings
from tests.integration_support import ThreadedServer
from tests.test_intake import CASE, SECRET, FakeOpener, post

RECALL = {"type": "salesforce.case.created",
          "data": {"id": "5003000000Recall", "category": "product-recall",
                   "subject": "FDA Class I recall of spinach (UPC 123456789012) for listeria",
                   "recall_class": "class_i", "upc": "123456789012"}}  # fmt: skip


@pytest.fixture
def served(monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CR_INTAKE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("CR_INTAKE_PORT", str(free_port()))
    monkeypatch.setenv("CR_ASSIST_INTAKE_BUDGET_SECONDS", "0.5")
    monkeypatch.delenv("CR_INTAKE_RULES_FILE", raising=False)
    get_settings.cache_clear()
    opener = FakeOpener()
    with ThreadedServer(intake.build_server(get_settings(), opener)) as server:
        yield server.url + "/webhooks/intake", opener
    get_settings.cache_clear()


def test_a_case_arrives_with_the_models_suggestion(served):
    url, opener = served
    LocalProvider().model  # the seed model, trained before the clock starts  # noqa: B018
    response = post(url, RECALL)
    assert response.status_code == 201
    (call,) = opener.calls
    assert call["playbook"] == "product-recall"  # the rules decide, as before
    suggestion: Suggestion = call["suggestion"]
    assert suggestion.playbook.value == "product-recall" and suggestion.provider == "local"
    assert suggestion.fields["upc"].value == "123456789012"


def test_a_slow_provider_never_holds_up_intake(served, monkeypatch):
    url, opener = served

    answer = threading.Event()  # a provider that answers only once the test is over

    def slow(self, text, playbooks):  # type: ignore[no-untyped-def]
        answer.wait(timeout=30)
        raise AssertionError("never answered in time")

    monkeypatch.setattr(LocalProvider, "suggest", slow)
    started = time.monotonic()
    try:
        response = post(url, CASE)
        assert response.status_code == 201 and time.monotonic() - started < 2.5
        assert opener.calls[0]["suggestion"] is None
        assert opener.calls[0]["playbook"] == "preservation"
    finally:
        answer.set()


def test_the_note_records_what_the_rules_chose_beside_the_suggestion():
    s = Suggestion(playbook=Scored(value="preservation", confidence=0.8, words=["preserve"]),
                   severity=Scored(value="sev2", confidence=0.7), provider="local",
                   model="tfidf-logreg", version="seed-14")  # fmt: skip
    note = note_for(s, playbook="legal-process", severity="sev2", by="intake:salesforce.case")
    assert note.chosen_playbook == "legal-process" and not note.accepted
    assert note.chosen_by == "intake:salesforce.case" and note.words == ["preserve"]
