"""Stand-in child workflows for the engine tests.

Kept apart from ``engine_support`` because the workflow sandbox re-imports this module: it may
import nothing but ``temporalio``.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn(name="ArchiveIncidentWorkflow")
class StandInArchiveWorkflow:
    """Keeps the archive request the closing incident sent, and waits to be terminated.

    It must not complete on its own: the time-skipping test server locks its clock when a child
    completes and unlocks it only when the parent takes the news, which a parent that already
    closed (the incident abandons its archive child) never does, so time would stop for good.
    """

    def __init__(self) -> None:
        self._request: dict[str, Any] | None = None

    @workflow.run
    async def run(self, request: dict[str, Any]) -> None:
        self._request = request
        await workflow.wait_condition(lambda: False)

    @workflow.query
    def request(self) -> dict[str, Any] | None:
        return self._request
