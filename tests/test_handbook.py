"""The handbook renders every shipped playbook, links every step, and names each content hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from insights.handbook import END, anchor, build_handbook, stale_playbooks, to_html, to_markdown
from playbooks.loader import scan_playbooks
from starter import run

SHIPPED = Path(__file__).resolve().parent.parent / "playbooks"


@pytest.fixture(scope="module")
def book():
    return build_handbook(SHIPPED)


def test_every_playbook_and_step_is_rendered_and_linked(book):
    loaded = {lp.playbook.name: lp for lp in scan_playbooks(SHIPPED)[0]}
    assert sorted(p.name for p in book.pages) == sorted(loaded) and len(loaded) == 8
    md, html = to_markdown(book), to_html(book)
    for page in book.pages:
        lp = loaded[page.name]
        assert (
            page.content_hash == lp.content_hash
            and lp.content_hash in md
            and lp.content_hash in html
        )
        ids = [s.id for s in lp.playbook.iter_steps()]
        assert [s.id for s in page.steps] == ids
        for sid in ids:
            target = anchor(page.name, sid)
            assert f'<a id="{target}"></a>' in md and f"](#{target})" in md
            assert f'id="{target}"' in html and f'href="#{target}"' in html
            assert re.search(rf"\bn_{re.escape(sid).replace('-', '_')}\b", page.diagram)
        for step in page.steps:  # every link leads to a step of the same playbook, or the end
            assert step.leads_to and all(link.to in ids or link.to == END for link in step.leads_to)
            assert step.guidance, f"{page.name}/{step.id} has no guidance"
        assert page.purpose and page.applies_when


def test_owner_sla_legal_basis_and_decisions_are_shown(book):
    ed = next(p for p in book.pages if p.name == "emergency-disclosure")
    legal = next(s for s in ed.steps if s.id == "legal-determination")
    assert legal.owner == "legal" and "due 1h" in legal.sla and "counted from incident" in legal.sla
    assert "§2702(b)(8)" in legal.legal_basis and legal.decision.startswith("approval by legal")
    failed = next(s for s in ed.steps if s.id == "verification-failed")
    assert [link.to for link in failed.leads_to] == ["flag-fraud", "legal-determination"]
    record = next(s for s in ed.steps if s.id == "record-fraud")
    assert [link.to for link in record.leads_to] == ["close-out"]  # the case's goto
    cs = next(p for p in book.pages if p.name == "child-safety")
    tip = next(s for s in cs.steps if s.id == "cybertip-report")
    assert tip.legal_clock and "statutory" in tip.sla and "§2258A" in tip.legal_basis


def test_a_written_handbook_is_checked_against_the_playbooks(book, tmp_path, capsys):
    written = tmp_path / "handbook.md"
    assert run(["handbook", "--output", str(written)]) == 0
    assert stale_playbooks(written.read_text(), SHIPPED) == []
    assert run(["handbook", "--check", str(written)]) == 0
    stale = tmp_path / "stale.md"
    text = written.read_text()
    first = re.search(r"handbook-playbook ([a-z-]+) (sha256:[0-9a-f]{64})", text)
    assert first is not None
    stale.write_text(text.replace(first[2], "sha256:" + "0" * 64))
    capsys.readouterr()
    assert run(["handbook", "--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: handbook {stale} is stale: playbook {first[1]} is sha256:")
    changed = tmp_path / "playbooks"
    changed.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        text = path.read_text()
        if path.stem == "preservation":
            text = text.replace("due: 4h", "due: 3h", 1)
        (changed / path.name).write_text(text)
    problems = stale_playbooks(written.read_text(), changed)
    assert len(problems) == 1 and problems[0].startswith("playbook preservation is sha256:")
    capsys.readouterr()
    assert run(["handbook", "--format", "html", "--playbook", "preservation"]) == 0
    assert capsys.readouterr().out.startswith("<!doctype html>")
    assert run(["handbook", "--playbook", "nope"]) == 2
    assert "unknown playbook 'nope'" in capsys.readouterr().err
