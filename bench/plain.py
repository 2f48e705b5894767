"""The baseline: a hand-written Temporal workflow of the benchmark playbook's shape.

Three activities, one approval raced against an SLA timer, one more activity: what a team would
write without the engine. ``bench.run`` measures the engine against it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn
class PlainIncidentWorkflow:
    def __init__(self) -> None:
        self.awaiting = False
        self.approved_by: str | None = None

    @workflow.run
    async def run(self, incident_id: str) -> str:
        timeout = timedelta(seconds=30)
        for step in ("open-case", "page", "notify"):
            await workflow.execute_activity("bench.noop", f"{incident_id}:{step}",
                                            start_to_close_timeout=timeout)  # fmt: skip
        self.awaiting = True
        try:
            await workflow.wait_condition(lambda: self.approved_by is not None,
                                          timeout=timedelta(hours=1))  # fmt: skip
        except TimeoutError:
            await workflow.execute_activity("bench.noop", f"{incident_id}:breach",
                                            start_to_close_timeout=timeout)  # fmt: skip
            await workflow.wait_condition(lambda: self.approved_by is not None)
        await workflow.execute_activity("bench.noop", f"{incident_id}:produce",
                                        start_to_close_timeout=timeout)  # fmt: skip
        return f"approved by {self.approved_by}"

    @workflow.update
    async def approve(self, who: str) -> str:
        self.approved_by = who
        return "approved"

    @approve.validator
    def _validate(self, who: str) -> None:
        if not self.awaiting or self.approved_by is not None:
            raise ValueError("not awaiting a decision")

    @workflow.query
    def is_awaiting(self) -> bool:
        return self.awaiting and self.approved_by is None
