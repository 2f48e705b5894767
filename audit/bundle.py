"""An exported incident's audit rows and the signed checkpoints that cover them, checked offline.

``incident audit export`` adds an ``audit`` section to the bundle: the incident's rows (every hashed
field and the hash), the checkpoints that name the incident, the public keys that signed them and
the log's id. ``incident audit replay`` checks it without the database: every row's hash, the
incident's chain, every checkpoint's signature and the row at each checkpointed position; then that
the timeline the histories carry (the input of every ``records.append``) says what the signed rows
say. Signatures are checked with this installation's audit key file when there is one (an auditor
points ``CR_AUDIT_KEY_FILE`` at a public copy), else with the keys the bundle carries, whose ids
the case file should be held against. Any difference means the bundle was altered after it was
written: reported as tampering, never as non-determinism.

The rows are exported as stored, their personal columns sealed (``records/sealed.py``): hashes and
signatures hold over the sealed text, so they are checked without keys. The rows are compared
with the histories in clear: opened here where the keys are; a decrypted export (``--decrypt``)
carries them opened beside the sealed text (``opened``), checked against it where the keys are.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from audit.replay import Loaded, ReplayFailure, rebuild
from audit.verify import check_incident, earliest, signed, uncovered_note
from encryption.keystore import DataKeyError
from encryption.master import MasterKeyError
from records import audit_key, checkpoints
from records.chain import row_from_json, row_json
from records.checkpoints import Checkpoint
from records.sealed import SealedColumnError, opened_columns
from records.tables import AuditRow, audit_log_id, canonical, iso, records_engine
from workflows.models import TimelineEntry

AUDIT_FORMAT = "critical-response.audit-rows/1"


def _with_opened(row: AuditRow) -> dict[str, Any]:
    detail, data = opened_columns(row)
    return {**row_json(row), "opened": {"detail": detail, "data": data}}


def audit_section(
    incident_id: str, url: str | None = None, *, decrypt: bool = False
) -> dict[str, Any]:
    """The incident's audit rows (as stored; ``decrypt``: with their columns opened beside),
    the checkpoints naming it and the keys that signed them."""
    with Session(records_engine(url)) as s:
        query = select(AuditRow).where(AuditRow.incident_id == incident_id)
        rows = list(s.exec(query.order_by(col(AuditRow.id))).all())
        log = audit_log_id(s)
    cps, _ = checkpoints.read(incident_id=incident_id)
    ring = audit_key.load(checkpoints.key_file())
    used = {cp.key_id for cp in cps}
    public = ring.public_b64() if ring is not None else {}
    return {
        "format": AUDIT_FORMAT,
        "log": log,
        "rows": [_with_opened(r) if decrypt else row_json(r) for r in rows],
        "checkpoints": [cp.to_json() for cp in cps],
        "keys": {k: v for k, v in public.items() if k in used},
    }


def check_section(
    audit: dict[str, Any], incident_id: str
) -> tuple[list[str], list[str], list[AuditRow]]:
    """(tampering found, notes, the rows) for an export's audit section."""
    try:
        rows = sorted((row_from_json(r) for r in audit["rows"]), key=lambda r: r.id)
        cps = [Checkpoint.from_json(c) for c in audit["checkpoints"]]
        keys = audit_key.load(checkpoints.key_file()) or audit_key.AuditKeys.from_public(
            audit.get("keys", {})
        )
        log = str(audit["log"])
    except (KeyError, TypeError, ValueError, audit_key.AuditKeyError) as err:
        return [f"the audit section is unreadable ({err})"], [], []
    strangers = sorted({r.incident_id for r in rows} - {incident_id})
    if strangers:
        return [f"the audit section holds rows of other incidents: {strangers}"], [], rows
    good, sig_break = signed(cps, keys, log)
    count, broken, covered = check_incident(rows, good)
    broken = earliest(broken, sig_break)
    if broken is not None:
        return [f"audit {broken.describe()}"], [], rows
    return [], uncovered_note(count, covered, incident_id), rows


def _entry_view(e: TimelineEntry) -> tuple[Any, ...]:
    return (iso(e.at), e.actor, e.role, e.kind, e.step, e.detail, e.sla, iso(e.due_at),
            canonical(e.data))  # fmt: skip


def _row_view(r: AuditRow) -> tuple[Any, ...]:
    return (iso(r.at), r.actor, r.role, r.action, r.step, r.detail, r.sla, iso(r.due_at), r.data)


def rows_in_clear(audit: dict[str, Any], rows: list[AuditRow]) -> tuple[list[AuditRow], list[str]]:
    """(the rows with detail and data in clear, tampering found): opened with the keys here, or
    as a decrypted export gives them (which must match what the keys open). A row whose columns
    open neither way is left out (nothing to compare the histories with)."""
    given = {r.get("id"): r.get("opened") for r in audit.get("rows", []) if isinstance(r, dict)}
    clear, problems = [], []
    for row in rows:
        try:
            here: tuple[str, str] | None = opened_columns(row)
        except (DataKeyError, MasterKeyError):
            here = None  # no key for it here
        except SealedColumnError as err:
            problems.append(f"audit row {row.id}: {err}")
            continue
        plain = given.get(row.id)
        if isinstance(plain, dict):
            theirs = (plain.get("detail"), plain.get("data"))
            if here is not None and theirs != here:
                problems.append(
                    f"audit row {row.id}'s opened detail or data differs from its sealed "
                    "columns: the decrypted export was altered"
                )
                continue
            here = (str(theirs[0]), str(theirs[1]))
        if here is not None:
            values = {**row.model_dump(), "detail": here[0], "data": here[1]}
            clear.append(AuditRow.model_validate(values))
    return clear, problems


def history_disagreements(rows: list[AuditRow], timeline: list[TimelineEntry]) -> list[str]:
    """Timeline entries the histories carry that differ from the signed row of the same seq
    (entries only one side has are fine: an unflushed tail, a reconcile entry)."""
    entries = {e.seq: e for e in timeline}
    return [
        f"the histories' timeline entry seq {r.seq} differs from audit row {r.id}, which the "
        "checkpoints sign: a history was altered after export"
        for r in rows
        if r.seq in entries and _entry_view(entries[r.seq]) != _row_view(r)
    ]


def tamper_failures(items: list[Loaded]) -> list[ReplayFailure]:
    """Every exported bundle's audit section and its histories' timeline, checked offline."""
    bundles: dict[tuple[str, str], list[Loaded]] = {}
    for item in items:
        if item.audit is not None:
            bundles.setdefault((item.source, item.history.workflow_id), []).append(item)
    failures = []
    for (source, workflow_id), runs in bundles.items():
        incident_id = runs[0].incident_id
        assert runs[0].audit is not None
        problems, _, rows = check_section(runs[0].audit, incident_id)
        if not problems:
            clear, problems = rows_in_clear(runs[0].audit, rows)
        if not problems:
            runs = sorted(runs, key=lambda i: i.history.events[0].event_time.ToDatetime())
            case = rebuild(incident_id, [r.history for r in runs])
            problems = history_disagreements(clear, case.timeline)
        failures += [
            ReplayFailure(
                incident_id=incident_id,
                workflow_id=workflow_id,
                run_id="",
                event_id=None,
                event_type=None,
                reason=problem,
                detail=f"in {source}",
                kind="tampered",
            )
            for problem in problems
        ]
    return failures
