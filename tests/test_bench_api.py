"""`make bench-api` in small (``bench/api_latency.py``): two incidents per path on the embedded
stack, opened and approved directly and through the API; the figures come out as JSON, the hop is
API minus direct, and a bad argument is one line on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CR_")}
    proc = subprocess.Popen([sys.executable, "-m", "bench.api_latency", *args], cwd=PROJECT_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the harness stops its stack, then exits
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"bench-api did not finish in {timeout:.0f} s:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_small_run_reports_both_paths_and_the_hop() -> None:
    done = bench("--n", "2", "--warmup", "0", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["incidents_per_path"] == 2 and result["approval_steps"]
    for op in ("open", "approve"):
        direct, api, hop = (result[op][p] for p in ("direct", "api", "hop"))
        assert all(direct[k] > 0 and api[k] > 0 for k in ("p50", "p99", "mean")), result
        assert hop["p50"] == pytest.approx(api["p50"] - direct["p50"])


def test_an_unknown_playbook_is_one_line() -> None:
    done = bench("--playbook", "no-such-playbook", "--n", "1", timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("bench-api failed: unknown playbook 'no-such-playbook'")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
