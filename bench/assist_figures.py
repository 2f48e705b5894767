"""The assisted-response figures (issue 14): triage accuracy per playbook on held-out generated
cases with a known answer and on hand-written ones (``assist/cases.py``) (the local model, and the chat provider against the sandbox's
emulator when ``--chat`` is given and the emulator is up), and how long `incident plan` takes per
shipped playbook (wall time: the server's start once, then each plan).

    .venv/bin/python -m bench.assist_figures [--chat] [--runs 3]

Prints Markdown; nothing is written to the records.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from assist.cases import hand_written
from assist.evaluate import accuracy_table, confusion_table, evaluate
from assist.model import train
from assist.providers import LocalProvider, installed_playbooks, provider_for
from assist.seed import generated, split
from playbooks.loader import list_playbooks
from process import exit_process
from stack.plan import plans


def accuracy(chat: bool) -> str:
    train_set, held_out = split(generated())
    playbooks = installed_playbooks()
    providers = [LocalProvider(train(train_set)), *([provider_for("chat")] if chat else [])]
    out = []
    for title, cases in ((f"{len(held_out)} held-out generated cases (trained on "
                          f"{len(train_set)})", held_out),
                         ("40 hand-written cases, worded unlike the generator's (never trained "
                          "on)", hand_written())):  # fmt: skip
        results = [evaluate(p, cases, playbooks) for p in providers]
        out.append(f"## Triage accuracy: {title}\n\n" + accuracy_table(results) + "\n\n"
                   + "\n\n".join(f"{r.provider} ({r.version}):\n\n" + confusion_table(r)
                                 for r in results))  # fmt: skip
    return "\n\n".join(out)


def plan_timings(runs: int) -> str:
    shipped = list_playbooks()
    per: dict[str, list[float]] = {lp.playbook.name: [] for lp in shipped}
    totals = []
    for _ in range(runs):
        started = time.perf_counter()
        for p in asyncio.run(plans(shipped, {})):
            per[p.playbook].append(p.wall_seconds)
        totals.append(time.perf_counter() - started)
    lines = [f"## `incident plan` wall time ({runs} runs, median)", "",
             "| playbook | plan (s) |", "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {statistics.median(v):.2f} |" for name, v in per.items()]
    lines.append(f"| all {len(shipped)}, server start included | {statistics.median(totals):.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chat", action="store_true", help="also the chat provider")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(accuracy(args.chat) + "\n\n" + plan_timings(args.runs), flush=True)
    exit_process(0)  # no SDK teardown abort (temporalio/sdk-python issue 300)
