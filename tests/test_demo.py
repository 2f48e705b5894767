"""`make demo` (`incident demo`) runs end to end on a fresh data directory: the emergency
disclosure is driven to close (its linked preservation incident left open on its own, the close
confirmed), and what the emulators received is printed."""

from __future__ import annotations

import subprocess

import pytest

from tests.test_stack_e2e import BIN, stack_env

pytestmark = pytest.mark.e2e


def test_the_demo_runs_to_close_on_a_fresh_data_directory(tmp_path):
    env = stack_env(tmp_path / "data")
    done = subprocess.run([str(BIN / "incident"), "demo"], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "outcome: closed" in out
    assert "linked_opened" in out and "DEMO-0001--open-preservation" in out
    assert "Incident_Id__c=DEMO-0001--open-preservation" in out  # the child's own Case
