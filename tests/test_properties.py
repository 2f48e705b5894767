"""Property-based tests (issue 8): whatever arrives — a signal's payloads, a playbook file, a
command line — the answer is a model or one clear refusal, never a crash, a traceback or a
partial write.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.common import RawValue

import starter
from connection import DATA_CONVERTER
from playbooks.loader import lint_file
from workflows.models import ApprovalRequest, ExternalEvent
from workflows.signals import SIGNAL_MODELS, MessageRefused, decode_signal

CONVERTER = DATA_CONVERTER.payload_converter
PLAYBOOKS = sorted((Path(__file__).parent.parent / "playbooks").glob("*.yaml"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),  # fmt: skip
    max_leaves=12,
)
encodings = st.sampled_from([b"json/plain", b"binary/plain", b"binary/null", b"json/protobuf",
                             b"binary/encrypted", b"", b"\xff\xfe"])  # fmt: skip


@st.composite
def payloads(draw: st.DrawFn) -> RawValue:
    """A payload as a raw Temporal client or the Web UI could send it: any encoding, any bytes,
    often a JSON document close to a real message."""
    if draw(st.booleans()):
        base = draw(st.sampled_from([
            {"name": "reply", "actor": "agency", "data": {"ref": "1"}},
            {"step_id": "disclose", "actor": "lena", "role": "legal", "reason": "ok"},
        ]))  # fmt: skip
        key = draw(st.sampled_from([*base, "extra"]))
        base = {**base, key: draw(json_values)}
        return RawValue(Payload(metadata={"encoding": b"json/plain"},
                                data=json.dumps(base).encode()))  # fmt: skip
    data = draw(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
    return RawValue(Payload(metadata={"encoding": draw(encodings)}, data=data))


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from([*SIGNAL_MODELS, "evnet", "", "x" * 300, "approve\nsignal"]),
    args=st.lists(payloads(), max_size=3),
)
def test_any_signal_decodes_to_its_model_or_one_clear_refusal(name, args):
    try:
        message = decode_signal(name, args, CONVERTER)
    except MessageRefused as refused:
        reason = str(refused)
        assert reason and "\n" not in reason and len(reason) <= 400
        return
    assert isinstance(message, SIGNAL_MODELS[name])
    assert isinstance(message, ExternalEvent | ApprovalRequest)


def _mutations() -> st.SearchStrategy[str]:
    """Shipped playbooks with one part replaced by something arbitrary."""

    def mutate(path: Path, data: st.DataObject) -> str:
        document = yaml.safe_load(path.read_text())
        target = document
        for _ in range(data.draw(st.integers(0, 3))):
            if isinstance(target, dict) and target:
                key = data.draw(st.sampled_from(sorted(target, key=str)))
                if not isinstance(target[key], dict | list):
                    break
                target = target[key]
            elif isinstance(target, list) and target:
                target = target[data.draw(st.integers(0, len(target) - 1))]
        if isinstance(target, dict) and target:
            key = data.draw(st.sampled_from(sorted(target, key=str)))
            target[key] = data.draw(json_values)
        elif isinstance(target, list) and target:
            target[data.draw(st.integers(0, len(target) - 1))] = data.draw(json_values)
        return yaml.safe_dump(document)

    return st.builds(mutate, st.sampled_from(PLAYBOOKS), st.data())


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(text=_mutations() | st.text(max_size=300))
def test_any_playbook_file_lints_to_clear_errors_never_a_crash(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("pb") / "mutated.yaml"
    path.write_text(text)
    errors = lint_file(path)  # raises nothing, whatever the text
    for error in errors:
        line = str(error)
        assert line.startswith(str(path)) and "\n" not in line.strip()


commands = st.sampled_from([
    ["open", "--playbook", "physical-safety", "--summary"],
    ["open", "--summary", "s", "--playbook"],
    ["list", "--severity"],
    ["list", "--playbook"],
    ["list", "--limit"],
    ["escalate", "X", "--reason", "r", "--severity"],
    ["report", "--since"],
    ["schedule", "daily-report", "--at"],
    ["note", "X"],
    ["open", "--playbook", "physical-safety", "--summary", "s", "--field"],
])  # fmt: skip


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # capsys is read each time
@given(command=commands, value=st.text(max_size=60))
def test_any_command_line_ends_in_a_code_and_at_most_one_error_line(command, value, capsys):
    code = starter.run([*command, value])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2)
    assert "Traceback" not in err and err.count("\n") <= 1
    if code:
        assert err.startswith("error: ")
