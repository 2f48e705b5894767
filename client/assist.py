"""The assisted-response commands, as a client of the API: ``incident suggest`` (a triage
suggestion for a case's text or an open incident's summary, and, with ``--open``, the incident
opened with the person's choice and the suggestion recorded beside it) and ``incident summary``
(the handover text for the next shift, from the records)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from api.bodies import OpenBody, SuggestBody, TriageBody
from client.http import Api, body
from terminal import CliError, JsonOpt, emit, out, pairs, printable

assist_client_app = typer.Typer()


def _show(s: dict[str, Any]) -> None:
    def line(label: str, scored: dict[str, Any]) -> str:
        words = ", ".join(printable(w) for w in scored.get("words") or [])
        because = f"  because: {words}" if words else ""
        return f"{label:<22} {printable(scored['value'])} ({scored['confidence']:.0%}){because}"

    out.print(line("playbook", s["playbook"]), markup=False)
    out.print(line("severity", s["severity"]), markup=False)
    for name, scored in s.get("fields", {}).items():
        out.print(line(f"field {name}", scored), markup=False)
    others = ", ".join(f"{a['value']} ({a['confidence']:.0%})" for a in s.get("alternatives", []))
    if others:
        out.print(f"{'or':<22} {others}", markup=False)
    out.print(f"by {s['provider']} {s['model']} {s['version']}", markup=False)


@assist_client_app.command("suggest")
def suggest(
    text: Annotated[str | None, typer.Option(help="The case, as reported.")] = None,
    incident: Annotated[str | None, typer.Option(help="An open incident: its summary.")] = None,
    provider: Annotated[str, typer.Option(help="local, or chat if configured.")] = "local",
    open_: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Open the incident with the suggestion "
            "(or what you give instead) and record both.",
        ),
    ] = False,  # fmt: skip
    playbook: Annotated[str | None, typer.Option(help="With --open: your playbook.")] = None,
    severity: Annotated[str | None, typer.Option(help="With --open: your severity.")] = None,
    field: Annotated[list[str], typer.Option("--field", help="With --open: key=value.")] = [],  # noqa: B006
    incident_id: Annotated[str | None, typer.Option("--id", help="With --open: its id.")] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="With --incident: record the "
            "suggestion and your choice (--severity, default the "
            "incident's) in its timeline.",
        ),
    ] = False,  # fmt: skip
    as_json: JsonOpt = False,
) -> None:
    """Suggest a playbook, severity and fields, each with a confidence and the words that led to
    it; a person decides (--open records the suggestion and the choice in the timeline)."""
    if (text is None) == (incident is None):
        raise typer.BadParameter("give --text or --incident (one of them)", param_hint="--text")
    if open_ and incident is not None:
        raise typer.BadParameter("--open opens a new incident: give --text", param_hint="--open")
    if record and incident is None:
        raise typer.BadParameter("--record records on an open incident: give --incident",
                                 param_hint="--record")  # fmt: skip
    api = Api()
    if record:
        assert incident is not None
        choice = body(TriageBody, provider=provider, severity=severity)
        entry = api.post("/incidents/" + quote(incident, safe="") + "/triage", choice)
        emit(as_json, entry, lambda: out.print(printable(entry["detail"]), markup=False))
        return
    if incident is not None:
        text = str(api.get("/incidents/" + quote(incident, safe=""))["summary"])
    assert text is not None
    found = api.post("/suggest", body(SuggestBody, text=text, provider=provider))
    if not open_:
        emit(as_json, found, lambda: _show(found))
        return
    fields = {k: v["value"] for k, v in found["fields"].items()} | pairs(field, "--field")
    chosen = playbook or found["playbook"]["value"]
    if chosen != found["playbook"]["value"] and not field:
        fields = {}  # the suggested fields are the suggested playbook's
    payload = body(OpenBody, {"id": "--id", "summary": "--text"}, playbook=chosen, summary=text,
                   severity=severity or found["severity"]["value"], fields=fields,
                   id=incident_id, triage=provider)  # fmt: skip
    result = api.post("/incidents", payload)
    if result.get("triage") is None:
        raise CliError(f"opened {result['incident_id']}, but {provider} gave no suggestion in "
                       "time: nothing was recorded beside it")  # fmt: skip
    emit(as_json, result, lambda: out.print(
        f"opened: {result['incident_id']} ({chosen}, {payload.severity}); the suggestion and "
        "your choice are in its timeline", markup=False))  # fmt: skip


@assist_client_app.command("summary")
def summary(
    incident_id: str,
    rewrite: Annotated[
        bool,
        typer.Option(
            "--rewrite", help="Reworded by the chat endpoint, kept only if it adds no fact."
        ),
    ] = False,  # fmt: skip
    as_json: JsonOpt = False,
) -> None:
    """A short handover for the next shift, from the records: state, what waits on whom, the
    nearest deadlines, open risks."""
    answer = Api().get("/incidents/" + quote(incident_id, safe="") + "/summary", rewrite=rewrite)

    def human() -> None:
        if answer.get("source") == "chat":
            out.print(printable(answer["text"]), markup=False)
            return
        for sentence in answer["sentences"]:
            out.print(printable(sentence["text"]), markup=False)

    emit(as_json, answer, human)
