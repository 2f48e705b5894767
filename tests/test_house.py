"""The house rules, checked from the code's own imports on every `make test` (`make house` prints
the drawing): no import loop between modules or between rooms, no module over the size limit
outside tests, and one place for the facts every room shares."""

from __future__ import annotations

import re
from pathlib import Path

from scripts import house

ROOT = Path(__file__).resolve().parent.parent


def test_no_import_loops_between_modules_or_rooms():
    graph = house.imports(house.modules())
    assert house.loops(graph) == []
    assert house.loops(house.room_graph(graph)) == []


def test_workflow_code_imports_nothing_above_it():
    graph = house.imports(house.modules())
    rooms = house.room_graph(graph)
    assert rooms["workflows"] <= {"playbooks"}
    assert rooms["playbooks"] <= {"settings", "terminal"}


def test_only_the_stack_serves_the_console():
    """The console sits beside the API; nothing below it may depend on it."""
    rooms = house.room_graph(house.imports(house.modules()))
    assert {room for room, uses in rooms.items() if "console" in uses} <= {"stack"}


def test_no_module_over_the_size_limit():
    over = [(n, name) for n, name in house.sizes(house.modules()) if n > house.MAX_LINES]
    assert over == []


def _sources() -> dict[Path, str]:
    return {p: p.read_text() for p in house.modules().values() if p.name != "house.py"}


def test_each_shared_fact_is_written_once():
    """The workflow-id prefix, the Salesforce queue suffix, the data converter and the process
    exit (``process.py``, which the API's clients use without the SDK) each live in one module;
    everything else asks that module."""
    facts = {
        r'"incident-': "workflows/names.py",
        r'-salesforce"': "playbooks/operations.py",
        r"pydantic_data_converter": "connection.py",
        r"os\._exit\(": "process.py",
        r'"IncidentSeverity"': "workflows/names.py",
    }
    for pattern, home in facts.items():
        where = sorted(
            str(p.relative_to(ROOT)) for p, text in _sources().items() if re.search(pattern, text)
        )
        assert where == [home], f"{pattern} appears in {where}, expected only {home}"
