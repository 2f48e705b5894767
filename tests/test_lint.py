"""Lint: every kind of problem is reported at its exact ``file:line`` and field path, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from playbooks.loader import (
    LintError,
    PlaybookError,
    lint_file,
    lint_files,
    list_playbooks,
    load_playbook,
    load_playbook_file,
)

# A valid playbook; tests append steps to it. Its `steps:` key is on line 6.
HEAD = """\
name: demo
version: 1
title: Demo
fields:
  jurisdiction: {choices: [us, eu]}
steps:
"""
OPEN_CASE = """\
  - id: open-case
    kind: action
    owner: lers
    activity: salesforce.upsert_case
    args: {subject: "{{ summary }}"}
"""  # lines 7-11 when it follows HEAD


def write(tmp_path: Path, steps: str, head: str = HEAD, name: str = "demo") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(head + steps, encoding="utf-8")
    return path


def block(steps: str) -> str:
    """An indented triple-quoted list of steps, placed under ``steps:``."""
    return textwrap.indent(textwrap.dedent(steps), "  ")


def where(errors: list[LintError]) -> list[tuple[int, str]]:
    return [(e.line, e.field_path) for e in errors]


def test_valid_playbook_has_no_errors(tmp_path: Path) -> None:
    assert lint_file(write(tmp_path, OPEN_CASE)) == []


def test_str_is_file_line_field_path_message(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE.replace("owner: lers", "owner: wizard"))
    [error] = lint_file(path)
    assert str(error).startswith(f"{path}:9: steps[0].owner: unknown role 'wizard'")


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "  - id: broken\n    args: {subject: [unclosed\n")
    [error] = lint_file(path)
    assert error.line == 14
    assert error.field_path == ""
    assert str(error).startswith(f"{path}:14: YAML: ")


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "", head="- just\n- a list\n")
    assert where(lint_file(path)) == [(1, "")]


def test_unknown_step_kind_points_at_kind(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "  - id: later\n    owner: cr\n    kind: frobnicate\n")
    [error] = lint_file(path)
    assert where([error]) == [(14, "steps[1].kind")]
    assert "'frobnicate'" in error.message


def test_missing_kind_points_at_the_step(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "  - id: later\n    owner: cr\n")
    assert where(lint_file(path)) == [(12, "steps[1].kind")]


def test_negative_duration(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "    sla:\n      due: -15m\n")
    [error] = lint_file(path)
    assert where([error]) == [(13, "steps[0].sla.due")]
    assert "negative duration" in error.message


def test_warn_at_after_due_points_at_warn_at(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "    sla:\n      due: 15m\n      warn_at: 20m\n")
    [error] = lint_file(path)
    assert where([error]) == [(14, "steps[0].sla.warn_at")]
    assert error.message == "warn_at must come before due"


def test_missing_required_key_gets_the_closest_existing_line(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "  - id: page\n    kind: action\n    owner: lers\n")
    [error] = lint_file(path)
    assert where([error]) == [(12, "steps[1].activity")]
    assert error.message == "Field required"


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE + "    titel: Open the case\n")
    assert where(lint_file(path)) == [(12, "steps[0].titel")]


def test_duplicate_step_id_across_nesting(tmp_path: Path) -> None:
    steps = """\
      - id: verify
        kind: parallel
        owner: lers
        branches:
          - name: a
            steps:
              - {id: open-case, kind: approval, owner: lers, roles: [lers]}
          - name: b
            steps:
              - {id: other, kind: approval, owner: lers, roles: [lers]}
    """
    [error] = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert where([error]) == [(18, "steps[1].branches[0].steps[0].id")]
    assert error.message == "duplicate step id 'open-case' (first used on line 7)"


BRANCH = """\
  - id: route
    kind: branch
    owner: lers
    cases:
      - when: {field: jurisdiction, equals: eu}
        steps:
          - {id: inner, kind: timer, owner: system, duration: 1h}
        goto: TARGET
  - id: done
    kind: timer
    owner: system
    duration: 1m
"""  # the goto is on line 19


def test_goto_to_a_missing_step(tmp_path: Path) -> None:
    [error] = lint_file(write(tmp_path, OPEN_CASE + BRANCH.replace("TARGET", "nowhere")))
    assert where([error]) == [(19, "steps[1].cases[0].goto")]
    assert error.message == "goto 'nowhere': no step has this id"


@pytest.mark.parametrize("target", ["open-case", "route", "inner"])
def test_goto_only_jumps_forward_in_the_same_list(tmp_path: Path, target: str) -> None:
    [error] = lint_file(write(tmp_path, OPEN_CASE + BRANCH.replace("TARGET", target)))
    assert where([error]) == [(19, "steps[1].cases[0].goto")]
    assert "later step in the same list" in error.message


def test_goto_forward_is_fine(tmp_path: Path) -> None:
    assert lint_file(write(tmp_path, OPEN_CASE + BRANCH.replace("TARGET", "done"))) == []


def test_unknown_activity(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE.replace("salesforce.upsert_case", "jira.create"))
    [error] = lint_file(path)
    assert where([error]) == [(10, "steps[0].activity")]
    assert error.message.startswith("unknown activity 'jira.create'; known: notify.email")


def test_missing_required_argument(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE.replace('subject: "{{ summary }}"', "priority: Low"))
    [error] = lint_file(path)
    assert where([error]) == [(11, "steps[0].args.subject")]
    assert error.message == "salesforce.upsert_case requires argument 'subject'"


def test_missing_args_key_points_at_the_step(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE.replace('    args: {subject: "{{ summary }}"}\n', ""))
    assert where(lint_file(path)) == [(7, "steps[0].args.subject")]


def test_unknown_argument(tmp_path: Path) -> None:
    steps = OPEN_CASE.replace("args: {", "args:\n      subject: x\n      urgency: high\n      #{")
    [error] = lint_file(write(tmp_path, steps))
    assert where([error]) == [(13, "steps[0].args.urgency")]
    assert error.message.startswith("salesforce.upsert_case takes no argument 'urgency'")


def test_templated_argument_types_wait_for_run_time_but_literals_are_checked(
    tmp_path: Path,
) -> None:
    steps = """\
      - id: page
        kind: action
        owner: lers
        activity: notify.pagerduty
        args:
          action: "{{ summary }}"
          severity: apocalyptic
    """
    [error] = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert where([error]) == [(18, "steps[1].args.severity")]


def test_unknown_roles_in_owner_roles_and_second_approver(tmp_path: Path) -> None:
    steps = """\
      - id: decide
        kind: approval
        owner: boss
        roles: [legal, counsel]
        second_approver:
          roles: [mgr, ceo]
    """
    errors = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert where(errors) == [
        (14, "steps[1].owner"),
        (15, "steps[1].roles[1]"),
        (17, "steps[1].second_approver.roles[1]"),
    ]
    assert [e.message.split(";")[0] for e in errors] == [
        "unknown role 'boss'",
        "unknown role 'counsel'",
        "unknown role 'ceo'",
    ]


def test_template_names_must_be_declared_fields_or_built_ins(tmp_path: Path) -> None:
    steps = """\
      - id: tell
        kind: action
        owner: lers
        activity: notify.slack
        args:
          text: "{{ incident_id }} in {{jurisdiction}} for {{ requester }}"
    """
    [error] = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert where([error]) == [(17, "steps[1].args.text")]
    assert error.message.startswith("template {{ requester }} is not a declared field")


def test_templates_may_read_decisions_of_approval_steps(tmp_path: Path) -> None:
    steps = """\
      - {id: decide_it, kind: approval, owner: legal, roles: [legal]}
      - id: tell
        kind: action
        owner: lers
        activity: notify.slack
        args:
          text: "{{ decision.decide_it }} / {{ decision.open-case }} / {{ decision.nope }}"
    """
    errors = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    # rules.render only fills names of letters, digits, _ and ., so a hyphenated id never renders.
    assert where(errors) == [(18, "steps[2].args.text"), (18, "steps[2].args.text")]
    assert [e.message.split(" is ")[0] for e in errors] == [
        "template {{ decision.open-case }}",
        "template {{ decision.nope }}",
    ]


def test_until_field_must_be_declared(tmp_path: Path) -> None:
    steps = "  - {id: wait, kind: timer, owner: system, until_field: return_date}\n"
    [error] = lint_file(write(tmp_path, OPEN_CASE + steps))
    assert where([error]) == [(12, "steps[1].until_field")]
    assert error.message == "until_field 'return_date' is not a declared field"


def test_legal_clock_cannot_pause(tmp_path: Path) -> None:
    sla = (
        "    sla:\n      due: 72h\n      legal: true\n      pauses_on: [x]\n      resumes_on: [y]\n"
    )
    events = "events: {x: {}, y: {}}\n"
    [error] = lint_file(write(tmp_path, OPEN_CASE + sla + events))
    assert where([error]) == [(15, "steps[0].sla.pauses_on")]
    assert error.message == "a legal clock runs on the wall clock and never pauses"


def test_legal_clock_cannot_run_on_business_hours(tmp_path: Path) -> None:
    sla = "    sla:\n      due: 72h\n      legal: true\n      clock: business\n"
    assert where(lint_file(write(tmp_path, OPEN_CASE + sla))) == [(15, "steps[0].sla.clock")]


def test_name_must_match_the_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE, name="other")
    [error] = lint_file(path)
    assert where([error]) == [(1, "name")]
    assert error.message == "name 'demo' does not match the file name 'other'"


def test_conditions_name_declared_fields_or_decisions_of_approvals(tmp_path: Path) -> None:
    steps = """\
      - id: route
        kind: branch
        owner: lers
        cases:
          - when:
              any:
                - {field: decision.open-case, equals: rejected}
                - not: {field: severity, equals: sev0}
                - {field: jurisdiction, in: [eu]}
                - {field: country, equals: de}
    """
    errors = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert where(errors) == [
        (18, "steps[1].cases[0].when.any[0].field"),
        (21, "steps[1].cases[0].when.any[3].field"),
    ]


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    steps = """\
      - id: open-case
        kind: action
        owner: wizard
        activity: salesforce.upsert_case
        args: {subject: "{{ nope }}"}
        sla: {due: -1m}
      - id: open-case
        kind: teleport
      - id: wait
        kind: timer
        owner: system
        duration: 90d
        remind_before: 100d
    """
    path = write(tmp_path, block(steps), name="elsewhere")
    assert where(lint_file(path)) == [
        (1, "name"),
        (9, "steps[0].owner"),
        (11, "steps[0].args.subject"),
        (12, "steps[0].sla.due"),
        (13, "steps[1].id"),
        (14, "steps[1].kind"),
        (19, "steps[2].remind_before"),
    ]


def test_lint_files_reports_every_file(tmp_path: Path) -> None:
    good = write(tmp_path, OPEN_CASE)
    bad = write(tmp_path, OPEN_CASE.replace("lers", "nobody"), name="bad")
    errors = lint_files([good, bad])
    assert [(e.file, e.line) for e in errors] == [(str(bad), 1), (str(bad), 9)]


def test_load_playbook_file_raises_with_every_error(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE.replace("lers", "nobody").replace("upsert", "upset"))
    with pytest.raises(PlaybookError) as raised:
        load_playbook_file(path)
    assert where(raised.value.errors) == [(9, "steps[0].owner"), (10, "steps[0].activity")]
    assert f"{path}:9: steps[0].owner" in str(raised.value)


def test_load_playbook_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, OPEN_CASE)
    loaded = load_playbook("demo", tmp_path)
    assert loaded.path == path
    assert loaded.playbook.name == "demo"
    assert loaded.content_hash.startswith("sha256:")


def test_unknown_playbook_name_lists_the_available_ones(tmp_path: Path) -> None:
    write(tmp_path, OPEN_CASE)
    with pytest.raises(PlaybookError, match=r"unknown playbook 'nope'; available: demo"):
        load_playbook("nope", tmp_path)
    with pytest.raises(PlaybookError, match="unknown playbook"):
        load_playbook("../demo", tmp_path)


def test_list_playbooks_fails_with_the_problems_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, OPEN_CASE)
    assert [p.playbook.name for p in list_playbooks(tmp_path)] == ["demo"]
    write(tmp_path, OPEN_CASE.replace("lers", "nobody"), name="bad")
    write(tmp_path, OPEN_CASE.replace("upsert", "upset"), name="worse")
    with pytest.raises(PlaybookError) as raised:
        list_playbooks(tmp_path)
    assert [(Path(e.file).name, e.field_path) for e in raised.value.errors] == [
        ("bad.yaml", "name"),
        ("bad.yaml", "steps[0].owner"),
        ("worse.yaml", "name"),
        ("worse.yaml", "steps[0].activity"),
    ]


# --- Declared events and fields -------------------------------------------------------------------

# A playbook that declares its events; `steps:` is on line 14.
EVENTS_HEAD = """\
name: demo
version: 1
title: Demo
fields:
  jurisdiction: {choices: [us, eu]}
  aware_at: {type: datetime}
  contact: {type: email}
events:
  evidence_in:
    sets: [contact]
  vendor_waiting: {}
  vendor_replied: {}
sla: {acknowledge: {due: 15m}}
steps:
"""
WAIT = """\
  - id: evidence
    kind: wait_for
    owner: lers
    event: evidence_in
    sla: {due: 1h, pauses_on: [vendor_waiting], resumes_on: [vendor_replied]}
"""  # lines 15-19


def test_declared_events_lint_clean(tmp_path: Path) -> None:
    assert lint_file(write(tmp_path, WAIT, head=EVENTS_HEAD)) == []


def test_awaited_events_must_be_declared(tmp_path: Path) -> None:
    steps = WAIT.replace("event: evidence_in", "event: evidense_in").replace(
        "resumes_on: [vendor_replied]", "resumes_on: [vendor_back]"
    )
    errors = lint_file(write(tmp_path, steps, head=EVENTS_HEAD))
    # evidence_in is now awaited by nobody, but it still sets a field: people may send it.
    assert [(e.line, e.field_path, e.message.split(" is ")[0]) for e in errors] == [
        (12, "events.vendor_replied", "event vendor_replied"),
        (18, "steps[0].event", "event 'evidense_in'"),
        (19, "steps[0].sla.resumes_on[0]", "event 'vendor_back'"),
    ]
    assert errors[0].message == (
        "event vendor_replied is awaited by no step and sets no field: it would do nothing"
    )
    assert errors[1].message == (
        "event 'evidense_in' is not declared under events (evidence_in, vendor_replied, "
        "vendor_waiting)"
    )


def test_a_playbook_that_waits_for_events_must_declare_them(tmp_path: Path) -> None:
    [error] = lint_file(write(tmp_path, WAIT))
    assert where([error]) == [(1, "events")]
    assert error.message.startswith(
        "the playbook waits for events (evidence_in, vendor_replied, vendor_waiting) but declares"
        " none"
    )


def test_events_set_declared_fields_only_and_names_are_plain(tmp_path: Path) -> None:
    head = EVENTS_HEAD.replace("sets: [contact]", "sets: [contact, retailer_email]").replace(
        "  vendor_waiting: {}", "  Vendor-Waiting: {sets: [contact]}\n  vendor_waiting: {}"
    )
    errors = lint_file(write(tmp_path, WAIT.replace("15", "16"), head=head))
    assert [(e.line, e.field_path) for e in errors] == [
        (10, "events.evidence_in.sets[1]"),
        (11, "events.Vendor-Waiting"),
    ]
    assert errors[0].message == (
        "event evidence_in sets 'retailer_email', which is not a declared field "
        "(jurisdiction, aware_at, contact)"
    )
    assert "lower-case letters, digits and _" in errors[1].message


def test_field_names_never_hide_a_built_in_fact(tmp_path: Path) -> None:
    head = HEAD.replace("fields:\n", "fields:\n  summary: {}\n  Bad-Name: {}\n")
    errors = lint_file(write(tmp_path, OPEN_CASE, head=head))
    assert [(e.field_path, e.message.split(";")[0]) for e in errors] == [
        ("fields.summary", "field 'summary' would hide the built-in fact summary"),
        ("fields.Bad-Name", "field name 'Bad-Name': use lower-case letters, digits and _"),
    ]


def test_field_types_and_choices_agree(tmp_path: Path) -> None:
    head = HEAD.replace(
        "fields:\n", "fields:\n  a: {type: choice}\n  b: {type: email, choices: [x]}\n"
    )
    errors = lint_file(write(tmp_path, OPEN_CASE, head=head))
    assert [(e.line, e.field_path, e.message) for e in errors] == [
        (5, "fields.a", "a field of type choice lists its choices"),
        (6, "fields.b", "choices go with type choice, not email"),
    ]


def test_a_timer_until_field_must_be_a_datetime(tmp_path: Path) -> None:
    steps = "  - {id: wait, kind: timer, owner: system, until_field: contact}\n"
    head = HEAD.replace("fields:\n", "fields:\n  contact: {type: email}\n")
    [error] = lint_file(write(tmp_path, steps, head=head))
    assert error.field_path == "steps[0].until_field"
    assert error.message == "until_field 'contact' is a email field; a timer needs type: datetime"


def test_conditions_and_templates_may_read_built_in_facts(tmp_path: Path) -> None:
    steps = """\
      - id: route
        kind: branch
        owner: lers
        cases:
          - when: {field: playbook, equals: demo}
            steps:
              - id: tell
                kind: action
                owner: lers
                activity: notify.slack
                args: {text: "{{ owner }} opened by {{ opened_by }} ({{ step_id }})"}
          - when: {field: owner_email, exists: true}
            steps: []
    """
    [error] = lint_file(write(tmp_path, OPEN_CASE + block(steps)))
    assert error.field_path == "steps[1].cases[1].when.field"
    assert error.message.startswith("condition on 'owner_email', which is neither a declared field")


# --- SLA anchors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anchor", "message"),
    [
        ("incident", None),
        ("field:aware_at", None),
        ("step:evidence", "anchor step:evidence is this step itself; leave anchor out"),
        ("step:open-case", None),
        ("field:contact", "anchor field:contact: 'contact' is a email field; a clock needs"),
        ("field:nope", "anchor field:nope: 'nope' is not a declared field"),
        ("step:nowhere", "anchor step:nowhere: no step has the id 'nowhere'"),
        ("tomorrow", "String should match pattern"),
    ],
)
def test_step_clock_anchors(tmp_path: Path, anchor: str, message: str | None) -> None:
    steps = OPEN_CASE + WAIT.replace("sla: {due: 1h,", f"sla: {{due: 1h, anchor: '{anchor}',")
    errors = lint_file(write(tmp_path, steps, head=EVENTS_HEAD))
    if message is None:
        assert errors == []
    else:
        [error] = errors
        assert (error.line, error.field_path) == (24, "steps[1].sla.anchor")
        assert error.message.startswith(message)


@pytest.mark.parametrize(
    ("anchor", "ok"), [("incident", True), ("field:aware_at", True), ("step:evidence", False)]
)
def test_incident_clock_anchors(tmp_path: Path, anchor: str, ok: bool) -> None:
    head = EVENTS_HEAD.replace(
        "{acknowledge: {due: 15m}}", f"{{acknowledge: {{due: 15m, anchor: '{anchor}'}}}}"
    )
    errors = lint_file(write(tmp_path, WAIT, head=head))
    assert [(e.line, e.field_path, e.message) for e in errors] == (
        []
        if ok
        else [
            (
                13,
                "sla.acknowledge.anchor",
                "anchor step:evidence: an incident clock starts at incident or field:<name>",
            )
        ]
    )


# --- The incident's resolve SLA against its own steps --------------------------------------------


def resolve_head(due: str, clock: str = "wall") -> str:
    return EVENTS_HEAD.replace(
        "sla: {acknowledge: {due: 15m}}", f"sla: {{resolve: {{due: {due}, clock: {clock}}}}}"
    )


LONG_STEPS = """\
  - {id: decide, kind: approval, owner: mgr, roles: [mgr], sla: {due: 72h}}
  - {id: review, kind: approval, owner: ic, roles: [ic], sla: {due: 40h, clock: business}}
"""


def test_resolve_shorter_than_a_step_names_the_longest_step(tmp_path: Path) -> None:
    [error] = lint_file(write(tmp_path, WAIT + LONG_STEPS, head=resolve_head("30m")))
    assert (error.line, error.field_path) == (13, "sla.resolve.due")
    assert error.message == (
        "the incident's resolve SLA (30m) is shorter than step review's SLA (40h business) and 2"
        " other step(s): every incident would breach it with every step on time; make it at"
        " least 7d"
    )


def test_business_hours_weigh_a_working_week_against_wall_time(tmp_path: Path) -> None:
    # 40 business hours are a working week: 7 calendar days; 72 h would still breach.
    [error] = lint_file(write(tmp_path, WAIT + LONG_STEPS, head=resolve_head("72h")))
    assert "step review's SLA (40h business)" in error.message
    assert lint_file(write(tmp_path, WAIT + LONG_STEPS, head=resolve_head("7d"))) == []
    # On a business resolve clock, 17.2 business hours are 72 wall hours: 16h is too short.
    [error] = lint_file(write(tmp_path, WAIT + LONG_STEPS, head=resolve_head("16h", "business")))
    assert error.message.startswith("the incident's resolve SLA (16h business) is shorter than")
    assert error.message.endswith("make it at least 40h business")
    assert lint_file(write(tmp_path, WAIT + LONG_STEPS, head=resolve_head("40h", "business"))) == []


def test_resolve_shorter_than_a_fixed_timer(tmp_path: Path) -> None:
    timer = "  - {id: hold, kind: timer, owner: system, duration: 90d}\n"
    [error] = lint_file(write(tmp_path, WAIT + timer, head=resolve_head("30d")))
    assert "timer step hold (90d)" in error.message
    assert lint_file(write(tmp_path, WAIT + timer, head=resolve_head("91d"))) == []
