"""The operator's assist commands, on the records and Temporal themselves: ``incident
triage-train`` (retrain the local model from the closed incidents) and ``incident triage-eval``
(how often each provider is right on held-out closed incidents). ``incident plan`` lives in
``assist/plan_cli.py``; ``incident suggest`` and ``incident summary`` go through the API
(``client/assist.py``)."""

from __future__ import annotations

from typing import Annotated

import typer

from assist.seed import Example
from terminal import CliError, JsonOpt, emit

assist_app = typer.Typer()
MIN_TRAINING = 8  # closed incidents, across at least two playbooks


@assist_app.command("triage-train")
def triage_train(as_json: JsonOpt = False) -> None:
    """Retrain the local triage model from the closed incidents in the records (versioned)."""
    from assist.model import train
    from assist.store import save
    from assist.training import closed_examples

    examples = closed_examples()
    _enough(examples)
    model = train(examples)
    path = save(model)
    names = sorted({e.playbook for e in examples})
    answer = {"version": model.version, "trained_on": model.trained_on, "path": str(path),
              "playbooks": names}  # fmt: skip
    emit(as_json, answer, lambda: typer.echo(
        f"triage model {model.version}: {model.trained_on} closed incidents, "
        f"{len(names)} playbooks; saved to {path}"))  # fmt: skip


def _enough(examples: list[Example]) -> None:
    if len(examples) < MIN_TRAINING or len({e.playbook for e in examples}) < 2:
        raise CliError(
            f"the records hold {len(examples)} readable closed incidents; training needs at least "
            f"{MIN_TRAINING} of two playbooks or more (until then the seed model answers; "
            "`incident triage-eval --generated` measures it)"
        )


@assist_app.command("triage-eval")
def triage_eval(
    generated: Annotated[
        bool,
        typer.Option(
            "--generated",
            help="Held-out generated cases with a known answer instead of the records.",
        ),
    ] = False,  # fmt: skip
    provider: Annotated[
        list[str],
        typer.Option(
            "--provider", help="local and/or chat (repeat); default: local, and chat if configured."
        ),
    ] = [],  # noqa: B006  # fmt: skip
    as_json: JsonOpt = False,
) -> None:
    """Accuracy of each provider on held-out closed incidents, per playbook, with the confusion
    table (the model is trained on the rest, so it never saw them)."""
    from assist.cases import hand_written
    from assist.evaluate import accuracy_table, confusion_table, evaluate
    from assist.model import train
    from assist.providers import LocalProvider, installed_playbooks, provider_for
    from assist.recording import agreement, recorded_choices
    from assist.seed import generated as generated_cases
    from assist.seed import split
    from assist.training import closed_examples
    from settings import get_settings

    settings = get_settings()
    names = provider or ["local", *(["chat"] if settings.assist_chat_url else [])]
    for name in names:
        if name not in ("local", "chat"):
            raise typer.BadParameter(f"must be local or chat, not {name!r}",
                                     param_hint="--provider")  # fmt: skip
    examples = generated_cases() if generated else closed_examples()
    if not generated:
        _enough(examples)
    train_set, held_out = split(examples)
    playbooks = installed_playbooks(settings)
    results, harder = [], []
    for name in names:
        chosen = LocalProvider(train(train_set)) if name == "local" else provider_for(name)
        results.append(evaluate(chosen, held_out, playbooks))
        if generated:  # and the hand-written cases, worded unlike the generator's
            harder.append(evaluate(chosen, hand_written(), playbooks))
    source = "generated cases" if generated else "closed incidents"
    recorded = {} if generated else agreement(recorded_choices())
    extra = ("\n\n40 hand-written cases (never trained on):\n\n" + accuracy_table(harder)
             + "\n\n" + "\n\n".join(f"{r.provider}:\n" + confusion_table(r) for r in harder)
             if harder else "")  # fmt: skip
    emit(as_json, {"source": source, "held_out": len(held_out), "trained_on": len(train_set),
                   "providers": [r.as_json() for r in results], "recorded": recorded,
                   "hand_written": [r.as_json() for r in harder]},  # fmt: skip
         lambda: typer.echo(
             f"{len(held_out)} held-out {source} (trained on {len(train_set)})\n\n"
             + accuracy_table(results) + "\n\n"
             + "\n\n".join(f"{r.provider} ({r.version}):\n" + confusion_table(r)
                           for r in results) + extra + _recorded_table(recorded)))  # fmt: skip


def _recorded_table(recorded: dict[str, dict[str, float | int]]) -> str:
    """How often the suggestion recorded at open was what the person chose (from the records)."""
    if not recorded:
        return ""
    lines = ["", "", "suggestions recorded at open, and how often people chose them:",
             "| playbook chosen | suggestions | playbook as suggested | severity as suggested |",
             "|---|---|---|---|"]  # fmt: skip
    for name, row in recorded.items():
        lines.append(f"| {name} | {row['suggestions']} | {row['playbook_right']:.0%} "
                     f"| {row['severity_right']:.0%} |")  # fmt: skip
    return "\n".join(lines)
