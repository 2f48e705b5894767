"""The API signs every action it forwards, and incidents are opened trusting only its keys.

An incident opened here carries the API's public keys and the roster (who held which role) in its
input; from then on the workflow acts only on messages signed with one of those keys, by a person
holding the role claimed (``workflows/signatures.py``). A message sent straight to Temporal,
bypassing this door, is refused and recorded.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel

from identity.keys import KeyRing
from roster import service as roster
from workflows import signatures
from workflows.models import IncidentInput

M = TypeVar("M", bound=BaseModel)


def trusting(inp: IncidentInput, ring: KeyRing, url: str | None = None) -> IncidentInput:
    """The incident's input with the keys it will trust and the roster as it stands now."""
    people = roster.list_people(include_inactive=False, url=url)
    snapshot = {p.handle: sorted(roster.roles_of(p.handle, url=url)) for p in people}
    return inp.model_copy(update={"trusted_keys": ring.public_keys(), "roster": snapshot})


class Signable(Protocol):
    """An incident as far as signing goes (its ``IncidentStatus``, or the API's ``Target``)."""

    incident_id: str
    trusted_key_ids: list[str]


def signed(ring: KeyRing, incident: Signable, action: str, message: M) -> M:
    """``message`` with the API's signature for this incident and action (an incident opened
    before signing, which trusts no key, gets it too: it simply does not check)."""
    fields = signatures.fields_of(incident.incident_id, action, message)
    signature = ring.sign(fields, trusted=incident.trusted_key_ids or None)
    return message.model_copy(update={"signature": signature})
