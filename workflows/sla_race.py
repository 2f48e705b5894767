"""The SLA race: the only place SLA timers live.

``_enforce_sla`` races a clock (a step's, or the incident's acknowledge/resolve clocks) against the
work it times, firing the warning and then the breach escalations. The clock arithmetic itself is
pure and lives in ``workflows/sla.py``; pause/resume events bump ``_clock_version`` so a running
race recomputes its timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from playbooks.schema import Sla, StepModel
    from workflows import rules
    from workflows import sla as clocks
    from workflows.bookkeeping import WALK_STOPS
    from workflows.models import ACK_CLOCK, RESOLVE_CLOCK
    from workflows.outbound import IncidentOutbound


class IncidentSlaRace(IncidentOutbound):
    """SLA clocks: start, stop, pause/resume, and the warning/breach race."""

    async def _enforce_sla(
        self, name: str, sla: Sla, step: StepModel | None, done: Callable[[], bool]
    ) -> None:
        """Fire the warning and the breach of clock ``name`` until ``done()``."""
        while not done():
            if self._stopping is not None and workflow.patched(WALK_STOPS):
                # As the walk (``IncidentWorkflow._run_steps``): a cancelled warning or page whose
                # call completed anyway returns normally; a stopping run waits on no new timer.
                raise asyncio.CancelledError()
            clock = self.state.clocks[name]
            # Only an anchored clock can start in the past; a legacy one keeps its exact commands.
            now = workflow.now() if sla.anchor != "step" else None
            upcoming = clocks.next_threshold(clock, self.inp.calendar, now)
            version = self._clock_version
            changed = lambda: done() or self._clock_version != version  # noqa: E731,B023
            if upcoming is None:
                await workflow.wait_condition(changed)
                continue
            which, at = upcoming
            if at > workflow.now():
                try:
                    await workflow.wait_condition(changed, timeout=at - workflow.now())
                    continue
                except TimeoutError:
                    pass
            if which == "warn":
                await self._sla_warning(name, clock.due_at)
            else:
                await self._sla_breach(name, sla, step)

    async def _sla_warning(self, name: str, due_at: datetime | None) -> None:
        self.state.clocks[name] = clocks.mark_warned(self.state.clocks[name], workflow.now())
        self._record(
            "sla_warning",
            f"{name} is due at {due_at.isoformat() if due_at else '?'}",
            step=name,
            clock=name,
        )
        await self._notify(f"{self._label()}: SLA warning on {name}", f"warn:{name}")

    async def _sla_breach(self, name: str, sla: Sla, step: StepModel | None) -> None:
        self.state.clocks[name] = clocks.mark_breached(self.state.clocks[name], workflow.now())
        self.state.sla_breached = True
        self._record("sla_breach", f"{name} missed its {sla.due} SLA", step=name, clock=name)
        self._publish()
        for index, escalation in enumerate(sla.on_breach):
            key = f"breach:{name}:{index}"
            if escalation.page:
                summary = f"{self._label()}: SLA breached on {name}"
                await self._page(escalation.page, summary, key, step=name)
            elif escalation.notify:
                await self._notify(
                    f"{self._label()}: SLA breached on {name}", key, channel=escalation.notify
                )
            elif escalation.raise_severity:
                new = rules.raised(self.state.severity, escalation.raise_severity)
                if new == self.state.severity:
                    # Already at the top: no "sev0 -> sev0" change; say so in the escalation.
                    self._record(
                        "escalation",
                        f"{escalation.model_dump_json(exclude_none=True)} skipped: the incident"
                        f" is already at {new}",
                        step=name,
                        clock=name,
                        data={"skipped": "already_top_severity"},
                    )
                    continue
                self._set_severity(new, "system", "system", f"SLA breach on {name}")
            elif escalation.fail and step is not None and step.id in self._bodies:
                self._sla_failed.add(step.id)
                self._bodies[step.id].cancel()
            self._record(
                "escalation", escalation.model_dump_json(exclude_none=True), step=name, clock=name
            )

    def _start_incident_clocks(self) -> None:
        for name in (ACK_CLOCK, RESOLVE_CLOCK):
            sla = self._sla_of(name)
            if sla is not None:
                self._start_clock(name, sla)

    def _start_step_clock(self, step: StepModel) -> None:
        """Start ``step``'s SLA clock (if it has one) at its anchor, as the step starts."""
        if step.sla is not None:
            self._start_clock(step.id, step.sla)

    def _start_clock(self, name: str, sla: Sla) -> None:
        """Start clock ``name`` at its anchor; a missing anchor counts from now, and says why."""
        start, fallback = workflow.now(), None
        if sla.anchor != "step":
            started = {
                sid: st.started_at for sid, st in self.state.steps.items() if st.status != "skipped"
            }
            start, fallback = clocks.anchor_start(
                sla.anchor,
                own_start=start,
                opened_at=self.state.opened_at,
                fields=self.state.fields,
                started=started,
                calendar=self.inp.calendar,
            )
        self.state.clocks[name] = clocks.start_clock(name, sla, start, self.inp.calendar)
        if fallback is not None:
            self._record(
                "sla_anchor_fallback",
                f"{name} counts from now, not from {sla.anchor}: {fallback}",
                step=name,
                clock=name,
                data={"anchor": sla.anchor, "reason": fallback},
            )

    def _incident_slas(self) -> list[tuple[str, Sla]]:
        """Incident clocks still running (a resumed run re-arms only those)."""
        pairs = [(n, self._sla_of(n)) for n in (ACK_CLOCK, RESOLVE_CLOCK)]
        return [
            (n, s)
            for n, s in pairs
            if s is not None and n in self.state.clocks and not self._clock_done(n)()
        ]

    def _clock_done(self, name: str) -> Callable[[], bool]:
        return lambda: self.state.clocks[name].stopped_at is not None

    def _stop_clock(self, name: str, *, met: bool = True) -> None:
        if name in self.state.clocks and self.state.clocks[name].stopped_at is None:
            self.state.clocks[name] = clocks.stop(
                self.state.clocks[name], workflow.now(), self.inp.calendar, met=met
            )

    def _sla_of(self, name: str) -> Sla | None:
        if name == ACK_CLOCK:
            return self.inp.playbook.sla.acknowledge
        if name == RESOLVE_CLOCK:
            return self.inp.playbook.sla.resolve
        step = self.steps.get(name)
        return step.sla if step is not None else None

    def _pause_or_resume(self, event: str) -> None:
        for name, clock in list(self.state.clocks.items()):
            sla = self._sla_of(name)
            if sla is None or clock.stopped_at is not None:
                continue
            if event in sla.pauses_on and clock.running_since is not None:
                self.state.clocks[name] = clocks.pause(clock, workflow.now(), self.inp.calendar)
                self._record("sla_paused", f"{name} paused by {event}", step=name, clock=name)
            elif event in sla.resumes_on and clock.running_since is None:
                self.state.clocks[name] = clocks.resume(clock, workflow.now(), self.inp.calendar)
                self._record("sla_resumed", f"{name} resumed by {event}", step=name, clock=name)
            else:
                continue
            self._clock_version += 1
