"""``incident suggest`` and ``incident summary`` as clients of the API (served over loopback with
the roster's tokens, no Temporal needed): the suggestion printed with its confidences and words,
JSON with --json, the summary from the records, and one-line errors with the right exit code."""

from __future__ import annotations

import json

from records.chain import write_batch
from tests.records_db import batch, entry, state
from tests.test_client import mint, run, served

FIXTURES = (served,)
CASE = "FDA Class I recall of peanut butter (UPC 123456789012, lot L123) for salmonella"


def test_suggest_prints_the_suggestion_and_its_reasons(served, capsys, monkeypatch):
    monkeypatch.setenv("CR_API_TOKEN", mint(served))
    code, out, err = run(["suggest", "--text", CASE], capsys)
    assert code == 0, err
    assert "playbook               product-recall (" in out and "because:" in out
    assert "field upc              123456789012" in out and "by local tfidf-logreg" in out
    code, out, _ = run(["suggest", "--text", CASE, "--json"], capsys)
    assert code == 0 and json.loads(out)["fields"]["recall_class"]["value"] == "class_i"


def test_suggest_errors_are_one_line(served, capsys, monkeypatch):
    monkeypatch.setenv("CR_API_TOKEN", mint(served))
    code, _, err = run(["suggest"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--text or --incident" in err
    code, _, err = run(["suggest", "--text", CASE, "--provider", "chat"], capsys)
    assert code == 1 and err.count("\n") == 1 and "CR_ASSIST_CHAT_URL" in err


def test_summary_from_the_records(served, capsys, monkeypatch):
    monkeypatch.setenv("CR_API_TOKEN", mint(served))
    opened = entry(1, 0, "casey", "opened", detail="recall", data={"severity": "sev1"})
    write_batch(batch("PR-1", [opened], state([opened]), playbook="product-recall"),
                served.effective_database_url)  # fmt: skip
    code, out, err = run(["summary", "PR-1"], capsys)
    assert code == 0, err
    assert out.startswith("Incident PR-1 (product-recall, sev2) is open, owned by alice")
    code, _, err = run(["summary", "NOPE"], capsys)
    assert code == 1 and "no incident NOPE" in err and err.count("\n") == 1
