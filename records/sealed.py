"""Personal data in the records database, sealed (AES-256-GCM) under the incident's own data key.

An incident's sealed columns use the data key of its workflow id (``workflow_id_for``), the key
its Temporal payloads are sealed under (``encryption/keystore.py``), so ``incident purge``
destroying that key shreds its records too, at the same moment as its histories and exports.

Sealed, because they carry text people typed, vendor answers, or whatever a playbook templated from
the case:

- ``audit_log.detail``: the summary at open, notes, decision reasons, the resolution, step results
  (vendor answers), refusal and terminate reasons.
- ``audit_log.data``: event data (the fields an event sets: account ids, report numbers), step
  result data, on-call answers.
- ``incident_records.resolution``: the resolution typed at close.

In clear, and why each is safe:

- ids and positions: ``incident_id``, ``workflow_id``, ``run_id``, ``id``, ``seq``, ``step`` (a
  playbook's step id), SLA clock names; hashes (``row_hash``, ``prev_*_hash``).
- kinds and states: ``action`` (the entry's kind), ``sla``, ``status``, ``severity`` and its
  history, the SLA outcomes (scope, kind, state, outcome), ``runs``, ``last_seq``, the flags.
- times: ``at``, ``due_at``, ``opened_at`` ... and ``playbook``, ``playbook_hash``.
- ``incident_board`` (``records/board.py``): running step ids, the roles and handles who must
  act, clock names and times, pending decisions' steps, roles and deciders.
- ``actor``, ``role``, ``owner``: the responders' handles (roster people, ``system``,
  ``intake:<type>``), never the people in the case; who did what must outlive a purge, and the
  roster keeps the same handles in clear to work at all.
- ``request_records`` (``records/requests.py``): request type, process type, jurisdiction and
  outcome (declared choices), how many accounts, times, the notice basis; never a field's text.
- ``archived_histories``: the manifest holds ids, playbook, counts and hashes; the history's
  payloads are sealed by the codec already (``encryption/codec.py``), failure messages with them.
- the ``_roster`` and ``_access`` streams (``roster/journal.py``) stay in clear: roster changes and
  refused requests name responders, roles, token ids and paths, no one in a case; the roster
  tables hold the same facts in clear because the service works from them; and they belong to no
  incident a purge could shred. Any stream whose id starts with ``_`` is such a journal.

A sealed value reads ``sealed:v1:<key id>:<base64 of nonce || ciphertext || tag>``; a value without
the prefix is plaintext (written before sealing, a journal stream, encryption switched off) and is
read as it is. The associated data names the column, the row (incident and seq) and the key, so a
sealed value moved to another row, column or incident does not open.

The audit chain hashes the stored text, ciphertext included (``records/chain.py``): verifying needs
no key, works for an auditor who holds none and still works after a purge. The price: a row is
never sealed again (new ciphertext, new hash); a master key rotation rewraps the data keys
(``KeyStore.rewrap``), never the rows.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from encryption.codec import Keys, shared_keys
from encryption.keystore import DataKey
from encryption.master import SealError, seal, unseal
from records.tables import AuditRow, IncidentRecord
from settings import get_settings
from workflows.names import workflow_id_for

PREFIX = "sealed:v1:"
DETAIL = "audit_log.detail"
DATA = "audit_log.data"
RESOLUTION = "incident_records.resolution"


class SealedColumnError(Exception):
    """A sealed value that does not open under its key: altered, moved or truncated."""


def is_stream(incident_id: str) -> bool:
    """A journal stream (``_roster``, ``_access``), not an incident: kept in clear."""
    return incident_id.startswith("_")


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def _aad(column: str, where: str, scope: str, key_id: str) -> bytes:
    return f"critical-response record\n{column}\n{where}\n{scope}\n{key_id}".encode()


def row_where(incident_id: str, seq: int) -> str:
    return f"{incident_id}/{seq}"


@dataclass(frozen=True)
class Sealer:
    """Seals one incident's values (``key`` None: leaves them in clear)."""

    incident_id: str
    key: DataKey | None = field(default=None, repr=False)

    def seal(self, column: str, where: str, value: str) -> str:
        if self.key is None:
            return value
        aad = _aad(column, where, self.key.scope, self.key.key_id)
        body = base64.b64encode(seal(self.key.secret, value.encode(), aad)).decode("ascii")
        return f"{PREFIX}{self.key.key_id}:{body}"

    def seal_row(self, row: AuditRow) -> None:
        where = row_where(row.incident_id, row.seq)
        row.detail = self.seal(DETAIL, where, row.detail)
        row.data = self.seal(DATA, where, row.data)


def sealer_for(incident_id: str, *, keys: Keys | None = None, clear: bool = False) -> Sealer:
    """The sealer of ``incident_id``'s records: its data key (made on first use), or none for a
    journal stream, with ``clear``, or when ``CR_PAYLOAD_ENCRYPTION=false``. Raises
    ``DataKeyDestroyed`` for a purged incident: nothing is ever sealed under a shredded key."""
    if clear or is_stream(incident_id) or not get_settings().payload_encryption:
        return Sealer(incident_id)
    _, store = (keys or shared_keys()).get()
    return Sealer(incident_id, store.data_key(workflow_id_for(incident_id)))


def open_value(
    incident_id: str, column: str, where: str, value: str, *, keys: Keys | None = None
) -> str:
    """``value`` in clear: opened when sealed (DataKeyDestroyed once purged, DataKeyError where
    the key is not to be had, SealedColumnError when altered), else as it is."""
    if not is_sealed(value):
        return value
    key_id, _, body = value.removeprefix(PREFIX).partition(":")
    scope = workflow_id_for(incident_id)
    _, store = (keys or shared_keys()).get()
    key = store.key_for(scope, key_id)
    try:
        return unseal(key.secret, base64.b64decode(body, validate=True),
                      _aad(column, where, scope, key_id)).decode()  # fmt: skip
    except (SealError, binascii.Error, ValueError, UnicodeDecodeError):
        raise SealedColumnError(
            f"{column} of {where} does not open under data key {key_id} of {scope}: it was "
            "altered, truncated or moved from another row (AES-GCM authentication failed)"
        ) from None


def opened_columns(row: AuditRow, *, keys: Keys | None = None) -> tuple[str, str]:
    """(detail, data) of an audit row, in clear."""
    where = row_where(row.incident_id, row.seq)
    return (
        open_value(row.incident_id, DETAIL, where, row.detail, keys=keys),
        open_value(row.incident_id, DATA, where, row.data, keys=keys),
    )


def opened(row: AuditRow, *, keys: Keys | None = None) -> AuditRow:
    """A detached copy of ``row`` with its detail and data in clear (never stored: its hash is
    over the sealed text)."""
    detail, data = opened_columns(row, keys=keys)
    return AuditRow.model_validate({**row.model_dump(), "detail": detail, "data": data})


def opened_resolution(record: IncidentRecord, *, keys: Keys | None = None) -> str | None:
    """The projection's resolution in clear."""
    if record.resolution is None:
        return None
    return open_value(record.incident_id, RESOLUTION, record.incident_id, record.resolution,
                      keys=keys)  # fmt: skip
