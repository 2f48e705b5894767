"""Sealed exports: opening a history's payloads for ``incident audit export --decrypt``, and saying
in one line why an export cannot be opened here (its incident purged, or no key for it).

An export is sealed by default: its histories carry Temporal's payloads as the codec sealed them
(``encryption/codec.py``) and its audit rows their sealed columns (``records/sealed.py``). Where the
keys are, ``replay`` opens both as it reads them; ``--decrypt`` writes them opened, for an authorised
operator handing a case file to someone without the keys.
"""

from __future__ import annotations

from collections.abc import Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

from audit.replay import Loaded
from connection import decode_payloads
from encryption.codec import PayloadCryptoError, is_sealed
from encryption.keystore import DataKeyDestroyed, DataKeyError
from encryption.master import MasterKeyError
from records.purge import purged

_PAYLOAD = Payload.DESCRIPTOR.full_name


def _payloads(message: Message) -> Iterator[Payload]:
    """Every payload inside ``message`` (fields, repeated fields and map values, at any depth)."""
    for fd, value in message.ListFields():
        kind = fd.message_type
        if fd.type != fd.TYPE_MESSAGE or kind is None:
            continue
        if kind.GetOptions().map_entry:
            kind = kind.fields_by_name["value"].message_type
            items = [value[key] for key in value] if kind is not None else []
        else:
            items = list(value) if fd.is_repeated else [value]
        for item in items:
            if kind is not None and kind.full_name == _PAYLOAD:
                yield item
            else:
                yield from _payloads(item)


def open_history(history: WorkflowHistory) -> WorkflowHistory:
    """A copy of ``history`` with every sealed payload opened (failures' encoded attributes
    too); raises as the codec does where a key is not to be had."""
    events = []
    for event in history.events:
        copy = HistoryEvent()
        copy.CopyFrom(event)
        for payload in _payloads(copy):
            if is_sealed(payload):
                [opened] = decode_payloads([payload])
                payload.CopyFrom(opened)
        events.append(copy)
    return WorkflowHistory(history.workflow_id, events)


def unreadable(incident_id: str, history: WorkflowHistory) -> str | None:
    """Why ``history``'s sealed payloads do not open here, in one line (None: they do, or it is
    in clear). Tried on its first sealed payload: all of a run's are under the same key."""
    probe = next((p for e in history.events[:1] for p in _payloads(e) if is_sealed(p)), None)
    if probe is None:
        return None
    try:
        decode_payloads([probe])
    except DataKeyDestroyed as err:
        purge = purged(incident_id)
        if purge is not None:
            return f"{purge.line()}; its data keys are destroyed: this export can no longer be read"
        return f"incident {incident_id}: {err}"
    except (DataKeyError, MasterKeyError, PayloadCryptoError) as err:
        return f"incident {incident_id}'s export is sealed and does not open here: {err}"
    return None


def split_unreadable(items: list[Loaded]) -> tuple[list[Loaded], list[tuple[str, str, str]]]:
    """(the runs that open here, (incident, workflow, why) for each workflow whose do not)."""
    whys: dict[str, str | None] = {}
    for item in items:
        workflow_id = item.history.workflow_id
        if workflow_id not in whys and item.history.events:
            whys[workflow_id] = unreadable(item.incident_id, item.history)
    readable = [i for i in items if whys.get(i.history.workflow_id) is None]
    gone, seen = [], set()
    for item in items:
        why = whys.get(item.history.workflow_id)
        if why is not None and item.history.workflow_id not in seen:
            seen.add(item.history.workflow_id)
            gone.append((item.incident_id, item.history.workflow_id, why))
    return readable, gone
