"""How often a provider's suggestions are right: accuracy per playbook on held-out cases with a
known answer, and the confusion table (rows: the answer, columns: the suggestion).

``incident triage-eval`` runs it on the held-out quarter of the team's closed incidents (the model
is trained on the other three quarters, so it never saw them), or with ``--generated`` on the
held-out quarter of the generated cases (``assist/seed.py``). Also measured from the records:
how often the suggestion recorded at open was the person's choice (``assist/recording.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from assist.seed import Example
from assist.suggestion import Provider
from playbooks.schema import Playbook


@dataclass
class Evaluation:
    """One provider's results on one held-out set."""

    provider: str
    version: str
    cases: int = 0
    playbook_right: Counter[str] = field(default_factory=Counter)  # per true playbook
    severity_right: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)  # (true, suggested)
    failures: int = 0  # cases the provider could not answer (counted wrong)

    def accuracy(self, playbook: str | None = None) -> float:
        if playbook is None:
            return sum(self.playbook_right.values()) / self.cases if self.cases else 0.0
        n = self.total[playbook]
        return self.playbook_right[playbook] / n if n else 0.0

    def severity_accuracy(self) -> float:
        return sum(self.severity_right.values()) / self.cases if self.cases else 0.0

    def as_json(self) -> dict[str, object]:
        names = sorted(self.total)
        return {
            "provider": self.provider, "version": self.version, "cases": self.cases,
            "accuracy": round(self.accuracy(), 4),
            "severity_accuracy": round(self.severity_accuracy(), 4), "failures": self.failures,
            "per_playbook": {n: {"cases": self.total[n], "accuracy": round(self.accuracy(n), 4)}
                             for n in names},
            "confusion": [{"true": t, "suggested": s, "count": c}
                          for (t, s), c in sorted(self.confusion.items())],
        }  # fmt: skip


def evaluate(provider: Provider, held_out: Sequence[Example],
             playbooks: dict[str, Playbook], version: str = "") -> Evaluation:  # fmt: skip
    """Ask ``provider`` about every held-out case and count how often it was right."""
    result = Evaluation(provider.name, version)
    for ex in held_out:
        result.cases += 1
        result.total[ex.playbook] += 1
        try:
            s = provider.suggest(ex.text, playbooks)
        except (ValueError, OSError):
            result.failures += 1
            result.confusion[(ex.playbook, "(no answer)")] += 1
            continue
        result.version = result.version or s.version
        result.confusion[(ex.playbook, s.playbook.value)] += 1
        if s.playbook.value == ex.playbook:
            result.playbook_right[ex.playbook] += 1
        if s.severity.value == ex.severity:
            result.severity_right[ex.playbook] += 1
    return result


def accuracy_table(results: Sequence[Evaluation]) -> str:
    """Per playbook, each provider's playbook accuracy (Markdown)."""
    names = sorted({n for r in results for n in r.total})
    head = "| playbook | cases | " + " | ".join(r.provider for r in results) + " |"
    lines = [head, "|---|---|" + "---|" * len(results)]
    for n in names:
        cells = " | ".join(f"{r.accuracy(n):.0%}" for r in results)
        lines.append(f"| {n} | {results[0].total[n]} | {cells} |")
    lines.append(f"| **all** | {results[0].cases} | "
                 + " | ".join(f"**{r.accuracy():.1%}**" for r in results) + " |")  # fmt: skip
    lines.append("| severity (all) | | "
                 + " | ".join(f"{r.severity_accuracy():.1%}" for r in results) + " |")  # fmt: skip
    return "\n".join(lines)


def confusion_table(result: Evaluation) -> str:
    """Rows: the right playbook; columns: what was suggested (Markdown)."""
    truths = sorted(result.total)
    suggested = sorted({s for _, s in result.confusion} | set(truths))
    short = [s.split("-")[0][:8] for s in suggested]
    lines = ["| answer \\ suggested | " + " | ".join(short) + " |",
             "|---|" + "---|" * len(suggested)]  # fmt: skip
    for t in truths:
        row = " | ".join(str(result.confusion[(t, s)] or ".") for s in suggested)
        lines.append(f"| {t} | {row} |")
    return "\n".join(lines)
