"""Stand-in child workflows for the engine tests.

Kept apart from ``engine_support`` because the workflow sandbox re-imports this module: it may
import nothing but ``temporalio``.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow


@workflow.defn(name="ArchiveIncidentWorkflow")
class StandInArchiveWorkflow:
    """Completes at once, returning the archive request the closing incident sent."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        return request
