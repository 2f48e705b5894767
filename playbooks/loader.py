"""YAML playbook files -> validated ``Playbook`` snapshots with a content hash, and ``incident lint``.

The starter loads a playbook here before it opens an incident: the file is parsed with node marks kept,
validated by ``playbooks.schema`` plus the checks pydantic cannot do (step ids, forward-only ``goto``,
the activity catalog, roles, template and field names), and hashed over its canonical JSON so the hash
names the content, not the formatting. Every problem becomes a ``LintError`` at ``file:line``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from playbooks.contract import BUILTIN_FIELDS, Loc, Problem, contract_problems
from playbooks.fields import MAX_FIELD_LENGTH
from playbooks.operations import OPERATIONS
from playbooks.schema import ROLES, STEP_KINDS, Playbook

PLAYBOOK_DIR = Path(__file__).parent
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"^[A-Za-z0-9_.]+$")  # what workflows.rules.render substitutes
# Model-level schema errors whose message names one key: point lint at that key when present.
_FOCUS = (
    ("warn_at must come before", ("warn_at",)),
    ("never pauses", ("pauses_on", "clock")),
    ("go together", ("pauses_on", "resumes_on")),
    ("remind_before must be shorter", ("remind_before",)),
)


@dataclass(frozen=True)
class LintError:
    """One problem in a playbook file, at a 1-based line and a field path like ``steps[2].sla.due``."""

    file: str
    line: int
    field_path: str
    message: str

    def __str__(self) -> str:
        where = f"{_escaped(self.field_path)}: " if self.field_path else ""
        message = " ".join(self.message.split())  # one line, whatever the parser said
        return f"{self.file}:{self.line}: {where}{_escaped(message)}"


def _escaped(text: str) -> str:
    """Control characters shown escaped: a key in a file may hold anything, a line may not."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class PlaybookError(Exception):
    """A playbook could not be loaded; ``errors`` lists every lint problem found (may be empty)."""

    def __init__(self, message: str, errors: Iterable[LintError] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


@dataclass(frozen=True)
class LoadedPlaybook:
    """A valid playbook, its content hash (``sha256:...``) and the file it came from."""

    playbook: Playbook
    content_hash: str
    path: Path


def content_hash(playbook: Playbook) -> str:
    """Hash of the canonical JSON of the playbook: blind to YAML layout, comments and key order.

    Keys added to the schema later are left out while they hold the value that means "as before"
    (no ``events``, a field's implied ``type`` and default ``max_length``, an SLA ``anchor`` of
    ``step``, ``on_failure`` of ``halt``, no handbook text), so a playbook that does not use them keeps its hash.
    """
    data = _as_before(playbook.model_dump(mode="json", by_alias=True))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _as_before(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_before(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _as_before(v) for k, v in value.items()}
    if out.get("events") == {} and "steps" in out:
        del out["events"]
    for spec in out.get("events", {}).values() if "steps" in out else ():
        if spec.get("roles") == []:
            del spec["roles"]  # an event any responder may send
    for spec in out.get("fields", {}).values() if "steps" in out else ():
        if spec.get("type") == ("choice" if spec.get("choices") else "text"):
            del spec["type"]
        if spec.get("max_length") == MAX_FIELD_LENGTH:
            del spec["max_length"]
    if out.get("anchor") == "step" and "due" in out:
        del out["anchor"]
    if "steps" in out and "version" in out and out.get("on_failure") == "halt":
        del out["on_failure"]  # the playbook-level default
    for text in ("purpose", "applies_when") if "steps" in out and "version" in out else ():
        if out.get(text) == "":
            del out[text]  # the handbook's texts, when a playbook has none
    if "kind" in out and "id" in out and out.get("on_failure") is None:
        out.pop("on_failure", None)  # a step that follows the playbook
    for text in ("guidance", "legal_basis") if "kind" in out and "id" in out else ():
        if out.get(text) == "":
            del out[text]
    return out


def load_playbook_file(path: str | Path) -> LoadedPlaybook:
    """Load and validate one file; raise ``PlaybookError`` listing every problem if it is invalid."""
    path = Path(path)
    playbook, errors = _check(path)
    if errors or playbook is None:
        lines = "\n".join(str(e) for e in errors)
        raise PlaybookError(f"{path}: {len(errors)} problem(s)\n{lines}", errors)
    return LoadedPlaybook(playbook, content_hash(playbook), path)


def load_playbook(name: str, directory: Path = PLAYBOOK_DIR) -> LoadedPlaybook:
    """Load ``<directory>/<name>.yaml``; an unknown name is an error naming the available ones."""
    available = sorted(p.stem for p in Path(directory).glob("*.yaml"))
    if name not in available:
        raise PlaybookError(f"unknown playbook {name!r}; available: {', '.join(available)}")
    return load_playbook_file(Path(directory) / f"{name}.yaml")


def list_playbooks(directory: Path = PLAYBOOK_DIR) -> list[LoadedPlaybook]:
    """Every playbook in ``directory`` by name; one invalid file fails the lot, with all problems."""
    paths = sorted(Path(directory).glob("*.yaml"))
    errors = lint_files(paths)
    if errors:
        lines = "\n".join(str(e) for e in errors)
        raise PlaybookError(f"{len(errors)} problem(s) in {directory}\n{lines}", errors)
    return [load_playbook_file(p) for p in paths]


def scan_playbooks(directory: Path = PLAYBOOK_DIR) -> tuple[list[LoadedPlaybook], list[LintError]]:
    """The valid playbooks in ``directory`` and the problems of the others: one broken file
    never hides the rest (``incident playbooks`` lists these and warns about those)."""
    loaded: list[LoadedPlaybook] = []
    problems: list[LintError] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        errors = lint_file(path)
        if errors:
            problems.extend(errors)
        else:
            loaded.append(load_playbook_file(path))
    return loaded, problems


def lint_file(path: str | Path) -> list[LintError]:
    """Every problem in one playbook file, in line order; empty when it is valid."""
    return _check(Path(path))[1]


def lint_files(paths: Iterable[str | Path]) -> list[LintError]:
    """Every problem in several files, file by file."""
    return [error for path in paths for error in lint_file(path)]


# --- Parsing and locating ------------------------------------------------------------------------


def _check(path: Path) -> tuple[Playbook | None, list[LintError]]:
    file = str(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
        constructor = yaml.SafeLoader("")
        data = constructor.construct_document(root) if root is not None else None
    except OSError as exc:
        return None, [LintError(file, 1, "", f"cannot read the file: {exc.strerror}")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return None, [LintError(file, mark.line + 1 if mark else 1, "", f"YAML: {exc.problem}")]
    except (yaml.YAMLError, ValueError) as exc:
        return None, [LintError(file, 1, "", f"YAML: {exc}")]
    if root is None or not isinstance(data, dict):
        return None, [
            LintError(file, 1, "", "a playbook is a YAML mapping with name, title and steps")
        ]

    problems: list[Problem] = []
    playbook = None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems += [_schema_problem(root, err) for err in exc.errors()]
    problems += _semantic_problems(data, root, path.stem)
    errors = [LintError(file, *_locate(root, loc)[:2], message) for loc, message in problems]
    return playbook, sorted(errors, key=lambda e: e.line)


def _schema_problem(root: yaml.Node, err: Any) -> tuple[Loc, str]:
    loc: Loc = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if str(err["type"]).startswith("union_tag"):
        loc += ("kind",)
    node = _locate(root, loc)[2]
    for needle, keys in _FOCUS:
        if needle in message and isinstance(node, yaml.MappingNode):
            present = [k for k in keys if _child(node, k)]
            loc += tuple(present[:1])
    return loc, message


def _child(node: yaml.Node | None, key: str | int) -> tuple[int, yaml.Node] | None:
    """(line of the key or item, value node) of ``key`` inside ``node``, or None."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if key_node.value == str(key):
                return key_node.start_mark.line + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        item = node.value[key]
        return item.start_mark.line + 1, item
    return None


def _locate(root: yaml.Node, loc: Loc) -> tuple[int, str, yaml.Node | None]:
    """Line, field path and node of ``loc``; a missing key gets its closest existing ancestor's line."""
    node: yaml.Node | None = root
    line, path = root.start_mark.line + 1, ""
    for key in loc:
        found = _child(node, key)
        if found is None and key in STEP_KINDS and isinstance(node, yaml.MappingNode):
            continue  # pydantic's discriminator tag (steps.0.action.sla) is not in the YAML
        path += f"[{key}]" if isinstance(key, int) else f".{key}" if path else str(key)
        if found is None:
            node = None
            continue
        line, node = found
    return line, path, node


# --- Checks pydantic cannot do ---------------------------------------------------------------------


def _walk(steps: Any, loc: Loc) -> Iterator[tuple[dict[str, Any], Loc, list[Any], int]]:
    """Every step mapping, nested ones included: (step, its loc, its enclosing list, its index)."""
    if not isinstance(steps, list):
        return
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        yield step, (*loc, i), steps, i
        for key in ("cases", "branches"):
            for k, sub in enumerate(_list(step.get(key))):
                if isinstance(sub, dict):
                    yield from _walk(sub.get("steps"), (*loc, i, key, k, "steps"))


def _semantic_problems(data: dict[str, Any], root: yaml.Node, stem: str) -> list[Problem]:
    fields = data.get("fields")
    declared = set(fields) if isinstance(fields, dict) else set()
    problems: list[Problem] = []
    name = data.get("name")
    if isinstance(name, str) and name != stem:
        problems.append((("name",), f"name {name!r} does not match the file name {stem!r}"))

    steps = list(_walk(data.get("steps"), ("steps",)))
    ids: dict[str, Loc] = {}  # ids are global across nesting
    for step, loc, _, _ in steps:
        sid = step.get("id")
        if isinstance(sid, str) and sid in ids:
            line = _locate(root, (*ids[sid], "id"))[0]
            problems.append(
                ((*loc, "id"), f"duplicate step id {sid!r} (first used on line {line})")
            )
        elif isinstance(sid, str):
            ids[sid] = loc
    facts = declared | BUILTIN_FIELDS
    facts |= {f"decision.{s['id']}" for s, *_ in steps if s.get("kind") == "approval" and "id" in s}

    for step, loc, siblings, index in steps:
        problems += _role_problems(step, loc) + _step_problems(step, loc, declared, stem)
        if step.get("kind") == "branch":
            later = [s.get("id") for s in siblings[index + 1 :] if isinstance(s, dict)]
            problems += _branch_problems(step, loc, set(ids), later, facts)
    problems += contract_problems(data, steps)
    return problems + _template_problems(data, (), facts)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _role_problems(step: dict[str, Any], loc: Loc) -> list[Problem]:
    named = [((*loc, "owner"), step.get("owner"))]
    named += [((*loc, "roles", i), role) for i, role in enumerate(_list(step.get("roles")))]
    second = step.get("second_approver")
    roles = _list(second.get("roles")) if isinstance(second, dict) else []
    named += [((*loc, "second_approver", "roles", i), role) for i, role in enumerate(roles)]
    return [
        (where, f"unknown role {role!r}; roles are {', '.join(sorted(ROLES))}")
        for where, role in named
        if isinstance(role, str) and role not in ROLES
    ]


def _step_problems(step: dict[str, Any], loc: Loc, declared: set[str], stem: str
                   ) -> list[Problem]:  # fmt: skip
    until = step.get("until_field")
    if step.get("kind") == "timer" and isinstance(until, str) and until not in declared:
        return [((*loc, "until_field"), f"until_field {until!r} is not a declared field")]
    if step.get("kind") == "open_incident" and step.get("playbook") == stem:
        return [((*loc, "playbook"), f"an incident cannot open one of its own playbook ({stem})")]
    operation, args = step.get("activity"), step.get("args") or {}
    if step.get("kind") != "action" or not isinstance(operation, str) or not isinstance(args, dict):
        return []  # anything else malformed here is the schema's to report
    model = OPERATIONS.get(operation)
    if model is None:
        known = ", ".join(sorted(OPERATIONS))
        return [((*loc, "activity"), f"unknown activity {operation!r}; known: {known}")]
    try:
        model.model_validate(args)
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors():
            key = err["loc"][0] if err["loc"] else ""
            value = args.get(key)
            if isinstance(value, str) and _TEMPLATE.search(value):
                continue  # a templated value's type is only known when the incident runs
            message = str(err["msg"])
            if err["type"] == "missing":
                message = f"{operation} requires argument {key!r}"
            elif err["type"] == "extra_forbidden":
                takes = ", ".join(model.model_fields)
                message = f"{operation} takes no argument {key!r}; it takes {takes}"
            problems.append(((*loc, "args", *err["loc"]), message))
        return problems
    return []


def _branch_problems(
    step: dict[str, Any], loc: Loc, ids: set[str], later: list[Any], facts: set[str]
) -> list[Problem]:
    problems: list[Problem] = []
    for k, case in enumerate(_list(step.get("cases"))):
        if not isinstance(case, dict):
            continue
        case_loc, goto = (*loc, "cases", k), case.get("goto")
        problems += _condition_problems(case.get("when"), (*case_loc, "when"), facts)
        if isinstance(goto, str) and goto not in ids:
            problems.append(((*case_loc, "goto"), f"goto {goto!r}: no step has this id"))
        elif isinstance(goto, str) and goto not in later:
            message = f"goto {goto!r} must name a later step in the same list as the branch"
            problems.append(((*case_loc, "goto"), message + " (jumps go forward only)"))
    return problems


def _condition_problems(when: Any, loc: Loc, facts: set[str]) -> list[Problem]:
    if not isinstance(when, dict):
        return []
    problems: list[Problem] = []
    field = when.get("field")
    if isinstance(field, str) and field not in facts:
        message = f"condition on {field!r}, which is neither a declared field, a built-in fact"
        problems.append(((*loc, "field"), message + " nor decision.<approval step id>"))
    for key in ("all", "any"):
        for i, sub in enumerate(_list(when.get(key))):
            problems += _condition_problems(sub, (*loc, key, i), facts)
    return problems + _condition_problems(when.get("not"), (*loc, "not"), facts)


def _template_problems(value: Any, loc: Loc, known: set[str]) -> list[Problem]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _template_problems(v, (*loc, k), known)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _template_problems(v, (*loc, i), known)]
    if not isinstance(value, str):
        return []
    names = [m.strip() for m in _TEMPLATE.findall(value)]
    return [
        (loc, f"template {{{{ {name} }}}} is not a declared field, built-in or decision.<id>")
        for name in names
        if not _NAME.match(name) or name not in known
    ]
