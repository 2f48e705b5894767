"""Replay throughput for `make bench`: how fast today's code re-runs recorded histories.

An auditor's `incident audit replay --all-closed`, the suite's recorded histories and every
workflow task of a worker with no workflow cache all pay this price, so it is measured on the
histories the benchmark itself just produced, engine and plain side by side: histories per
second and history events per second, one replayer per side, in the sandbox each side's worker
used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer, WorkflowRunner


async def fetch_histories(client: Client, workflow_ids: list[str]) -> list[WorkflowHistory]:
    """The histories of the given workflows, as an auditor's export would read them."""
    return [await client.get_workflow_handle(w).fetch_history() for w in workflow_ids]


async def replay_rate(
    histories: list[WorkflowHistory],
    workflows: Sequence[type],
    client: Client,
    runner: WorkflowRunner,
) -> dict[str, Any]:
    """Replay every history once (after one warm-up replay); histories/s and events/s.

    A replay that fails is an error here: the benchmark's own histories must replay.
    """
    replayer = Replayer(
        workflows=workflows, data_converter=client.data_converter, workflow_runner=runner
    )
    await replayer.replay_workflow(histories[0])  # imports and sandbox warm-up, not measured
    events = sum(len(h.events) for h in histories)
    started = time.perf_counter()
    async with replayer.workflow_replay_iterator(_each(histories)) as results:
        async for result in results:
            if result.replay_failure is not None:
                raise RuntimeError(f"a bench history did not replay: {result.replay_failure}")
    elapsed = time.perf_counter() - started
    return {
        "histories": len(histories),
        "per_second": len(histories) / elapsed,
        "events_per_second": events / elapsed,
    }


async def _each(histories: list[WorkflowHistory]) -> Any:
    for history in histories:
        yield history
