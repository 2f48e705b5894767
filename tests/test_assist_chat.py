"""The chat provider and what leaves the process: redaction of personal data (property-based),
the OpenAI-compatible endpoint emulated by the sandbox (suggestions, errors, what it received),
its accuracy on held-out generated cases, and a handover rewrite kept only when it invents no
fact."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from assist.chat import ChatError, ChatProvider
from assist.evaluate import accuracy_table, evaluate
from assist.providers import installed_playbooks
from assist.redact import redact
from assist.seed import generated, split
from assist.summary import Handover, Sentence, checked_rewrite
from tests.integration_support import integration_env, sandbox_server, state

FIXTURES = (integration_env, sandbox_server)
PLAYBOOKS = installed_playbooks()

# --- redaction ---------------------------------------------------------------------------------

emails = st.from_regex(r"[a-z][a-z0-9._]{0,12}@[a-z]{2,10}\.(com|org|gov|example)", fullmatch=True)
phones = st.from_regex(r"\+[1-9][0-9]{9,12}", fullmatch=True) | st.from_regex(
    r"\(?[2-9][0-9]{2}\)? [0-9]{3}-[0-9]{4}", fullmatch=True)  # fmt: skip
ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
cards = st.from_regex(r"[3-6][0-9]{3}( [0-9]{4}){3}", fullmatch=True)
accounts = st.from_regex(r"(acct|user|uid)-[0-9]{5,9}", fullmatch=True)
urls = st.from_regex(r"https://[a-z]{3,10}\.(com|net)/[a-z0-9/]{1,20}", fullmatch=True)
filler = st.sampled_from(["Report from", "please check", "the shopper said", "ASAP;", "re:", ""])


@settings(max_examples=300, deadline=None)
@given(filler, emails, phones, ipv4, cards, accounts, urls, filler)
def test_no_personal_value_survives_redaction(a, email, phone, ip, card, account, url, b):
    text = f"{a} {email} called {phone} from {ip}, card {card}, account {account} ({url}) {b}"
    out = redact(text)
    for secret in (email, phone, ip, card, account, url):
        assert secret not in out, (secret, out)
    assert "[email]" in out and "[ip]" in out and "[card]" in out and "[url]" in out


def test_redaction_keeps_what_names_no_one_and_removes_declared_fields():
    text = ("Shopper Jane Roe at 742 Evergreen Terrace reports assault on 2026-03-01; §2703(f) "
            "preservation, FDA Class II; IPv6 2001:db8::1; case 5003000000D8cuI")  # fmt: skip
    fields = {"reporter_name": "Jane Roe", "jurisdiction": "us", "received_at": "2026-03-01"}
    specs = PLAYBOOKS["preservation"].fields
    out = redact(text, fields, specs)
    assert "Jane Roe" not in out and "[field:reporter_name]" in out
    assert "742 Evergreen" not in out and "[address]" in out
    assert "2001:db8::1" not in out and "5003000000D8cuI" not in out
    assert "2026-03-01" in out and "2703(f)" in out and "Class II" in out and "assault" in out


# --- the provider against the sandbox's endpoint ------------------------------------------------


@pytest.fixture
def chat(integration_env, sandbox_server):
    return ChatProvider(f"{integration_env.sandbox_url}/openai", "emulated-1", SecretStr("sk-test"))


CASE = ("Emergency disclosure request from Springfield PD (det.12@police.gov, +15551234567): a "
        "kidnapping in progress, data for account acct-1234567 at 10.1.2.3")  # fmt: skip


def test_a_chat_suggestion_from_redacted_text(chat, sandbox_server):
    s = chat.suggest(CASE, PLAYBOOKS)
    assert (s.playbook.value, s.severity.value) == ("emergency-disclosure", "sev0")
    assert s.provider == "chat" and s.model == "emulated-1"
    assert s.fields["account_id"].value == "acct-1234567"  # read here, from the original text
    (sent,) = state(sandbox_server)["openai"]["requests"]
    wire = json.dumps(sent)
    for secret in ("det.12@police.gov", "+15551234567", "acct-1234567", "10.1.2.3"):
        assert secret not in wire
    assert sent["response_format"] == {"type": "json_object"} and sent["model"] == "emulated-1"


def test_chat_failures_are_one_line_errors(integration_env, sandbox_server):
    keyless = ChatProvider(f"{integration_env.sandbox_url}/openai", "m", None)
    with pytest.raises(ChatError, match="HTTP 401"):
        keyless.suggest(CASE, PLAYBOOKS)

    def junk(request: httpx.Request) -> httpx.Response:
        content = json.dumps({"playbook": "made-up", "severity": "sev0",
                              "playbook_confidence": 1, "severity_confidence": 1})  # fmt: skip
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    made_up = ChatProvider("http://chat", "m", SecretStr("k"), transport=httpx.MockTransport(junk))
    with pytest.raises(ChatError, match="no installed playbook"):
        made_up.suggest(CASE, PLAYBOOKS)
    unreachable = ChatProvider("http://127.0.0.1:9", "m", SecretStr("k"), timeout=0.5)
    with pytest.raises(ChatError, match="unreachable"):
        unreachable.suggest(CASE, PLAYBOOKS)


def test_chat_accuracy_on_held_out_cases(chat):
    _, held_out = split(generated())
    result = evaluate(chat, held_out, PLAYBOOKS)
    print("\n" + accuracy_table([result]))
    assert result.failures == 0 and result.accuracy() >= 0.8


# --- the handover rewrite -----------------------------------------------------------------------

H = Handover("ED-1", [
    Sentence("Incident ED-1 (emergency-disclosure, sev0) is open, owned by casey.", {}, []),
    Sentence("The legal-determination clock is due at 2026-03-02 10:00 UTC (on track).", {}, []),
])  # fmt: skip


def test_a_rewrite_is_kept_only_if_every_fact_is_the_records():
    good = ("ED-1 (emergency-disclosure, sev0) is open with casey; legal-determination is due "
            "2026-03-02 10:00 UTC.")  # fmt: skip
    assert checked_rewrite(H, good).text == good and checked_rewrite(H, good).source == "chat"
    for invented in ("ED-1 is open; legal-determination is due 2026-03-02 11:00 UTC.",
                     "ED-1 is open; the page-lers step failed.",
                     "ED-1 concerns [email]."):  # fmt: skip
        kept = checked_rewrite(H, invented)
        assert kept.source == "records" and kept.text == H.text


def test_the_emulated_rewrite_passes_the_check(chat):
    rewritten = chat.rewrite([s.text for s in H.sentences])
    assert checked_rewrite(H, rewritten).source == "chat"
