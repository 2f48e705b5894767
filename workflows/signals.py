"""Signals: the messages Temporal cannot refuse, so the workflow refuses them itself.

A signal is written to history before any code of ours sees it, and a handler that raises on a
malformed payload would fail every later workflow task: one bad signal (two arguments, none, a
binary payload, null, 1.5 MB) would freeze the incident for good. So every signal arrives here raw,
whatever its name, and is decoded under our control: a message that is unknown, malformed or over a
limit is refused, recorded in the timeline as ``message_refused`` with the reason, and changes
nothing else. Well-formed ones go to the same logic as their Update twins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue
from temporalio.converter import PayloadConverter

with workflow.unsafe.imports_passed_through():
    from workflows.assisted import IncidentAssisted
    from workflows.linked import LinkedState
    from workflows.models import ApprovalRequest, ExternalEvent
    from workflows.names import SIGNAL_APPROVE, SIGNAL_EVENT, SIGNAL_LINKED, SIGNAL_REJECT
    from workflows.signatures import SIGNAL_ACTIONS

SIGNAL_MODELS: dict[str, type[BaseModel]] = {
    SIGNAL_EVENT: ExternalEvent,
    SIGNAL_APPROVE: ApprovalRequest,
    SIGNAL_REJECT: ApprovalRequest,
    SIGNAL_LINKED: LinkedState,
}
REASON_MAX = 300  # a refusal's reason in the timeline: enough to act on, never the payload itself


class MessageRefused(Exception):
    """A signal that cannot be acted on; the message says why, in one line."""


class IncidentSignals(IncidentAssisted):
    """The one signal handler of ``IncidentWorkflow``: decode, refuse or dispatch."""

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        try:
            message = decode_signal(name, args, workflow.payload_converter())
        except MessageRefused as refused:
            self._refuse_message(name, str(refused))
            return
        if isinstance(message, ExternalEvent):
            # Signed (and checked against the roster) on an incident that trusts keys; refused
            # and recorded otherwise. Decisions are checked the same way in ``_decide``.
            if self._admitted(SIGNAL_ACTIONS[name], message, name, raise_refusal=False):
                self._on_event(message)
        elif isinstance(message, ApprovalRequest):
            self._decide(message, SIGNAL_ACTIONS[name], raise_refusal=False, message=name)
        elif isinstance(message, LinkedState):
            self._on_linked_state(message)

    def _refuse_message(self, name: str, reason: str) -> None:
        self._record(
            "message_refused",
            reason[:REASON_MAX],
            data={"message": name[:64]},
        )

    def _on_event(self, event: ExternalEvent) -> None:
        if self.state.status == "closed":
            return
        # The playbook declares the events it accepts, the fields each may set and, where it
        # matters, who may send it (a legacy snapshot declares none and accepts all, as it did
        # when it was recorded). A sender's role is authenticated only on a signed incident.
        code, problem = "invalid_event", self.inp.playbook.check_event(event.name, event.data)
        spec = self.inp.playbook.events.get(event.name)
        if problem is None and spec is not None and self.inp.trusted_keys:
            code, problem = "role_not_allowed", spec.refuses_role(event.name, event.role)
        if problem:
            self._record(
                "message_refused",
                problem[:REASON_MAX],
                actor=event.actor,
                role=event.role,
                data={"message": SIGNAL_EVENT, "event": event.name, "code": code},
                request_id=event.request_id,
            )
            return
        self.state.fields.update(event.data)
        self.state.events_pending[event.name] = self.state.events_pending.get(event.name, 0) + 1
        self._record(
            "event",
            event.name,
            actor=event.actor,
            data={k: v for k, v in event.data.items()},
            request_id=event.request_id,
        )
        self._pause_or_resume(event.name)


def _first_line(err: Exception | str) -> str:
    """One line of at most 200 characters: whatever a message carried cannot break a timeline."""
    text = " ".join(str(err).split())
    return text[:200] or type(err).__name__


def decode_signal(name: str, args: Sequence[RawValue], converter: PayloadConverter) -> BaseModel:
    """The signal's message as its model, or ``MessageRefused`` saying (in one line) why not.

    Pure and deterministic (the same payloads always give the same answer), so it is safe in
    workflow code and testable over any payload (tests/test_properties.py)."""
    model = SIGNAL_MODELS.get(name)
    if model is None:
        raise MessageRefused(
            f"unknown signal {_first_line(name)[:64]!r}; this incident accepts "
            f"{', '.join(SIGNAL_MODELS)}"
        )
    if len(args) != 1:
        raise MessageRefused(
            f"{name} takes exactly one argument ({model.__name__}), got {len(args)}"
        )
    try:
        value: Any = converter.from_payload(args[0].payload, model)
    except Exception as err:  # noqa: BLE001 - any decoding failure is a refusal, never a crash
        raise MessageRefused(f"{name}: not a valid {model.__name__}: {_first_line(err)}") from None
    if not isinstance(value, model):  # e.g. a binary/plain payload decodes to bytes
        raise MessageRefused(
            f"{name}: expected a JSON {model.__name__}, got {type(value).__name__}"
        )
    return value
