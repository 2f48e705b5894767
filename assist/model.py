"""The local triage model: TF-IDF over the case text, one linear classifier for the playbook and
one for the severity, probabilities calibrated, each answer explained by its top words.

Trained from the team's closed incidents (``assist/training.py``) by ``incident triage-train``, or,
on a fresh install, from the generated cases of ``assist/seed.py`` (the seed model, the same on
every machine). A trained model is saved in the data directory, named by its version: the content
hash of its training set and the time it was trained (``assist/store.py``). No network, ever.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from assist.seed import Example, generated

SEED_VERSION = "seed-14"  # the seed model: generated(per_playbook=60, seed=14)
TOP_WORDS = 5


@dataclass(frozen=True)
class Ranked:
    """One label's answer: the label, its calibrated probability, the words that pushed it up."""

    label: str
    confidence: float
    words: list[str]


def training_hash(examples: Sequence[Example]) -> str:
    """The content hash of a training set (order-independent): part of a model's version."""
    rows = sorted(json.dumps([e.text, e.playbook, e.severity], ensure_ascii=False)
                  for e in examples)  # fmt: skip
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


class LabelModel:
    """One target (playbook or severity): a linear classifier for the words, calibrated for the
    probability when every label has at least three examples (else the classifier's own)."""

    def __init__(self, vectorizer: TfidfVectorizer, texts: Sequence[str], labels: Sequence[str]):
        self.vectorizer = vectorizer
        x = vectorizer.transform(texts)
        self.linear = LogisticRegression(C=10.0, max_iter=2000).fit(x, labels)
        counts = Counter(labels)
        self.calibrated: CalibratedClassifierCV | None = None
        if len(counts) > 1 and min(counts.values()) >= 3:
            base = LogisticRegression(C=10.0, max_iter=2000)
            self.calibrated = CalibratedClassifierCV(base, method="sigmoid", cv=3).fit(x, labels)

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.linear.classes_]

    def rank(self, text: str) -> list[Ranked]:
        """Every label, most likely first, with the words of ``text`` that count most for it."""
        x = self.vectorizer.transform([text])
        model: Any = self.calibrated or self.linear
        probs = model.predict_proba(x)[0]
        classes = [str(c) for c in model.classes_]
        order = np.argsort(-probs)
        return [Ranked(classes[i], float(probs[i]), self.words(x, classes[i])) for i in order]

    def words(self, x: Any, label: str) -> list[str]:
        """The terms present in the text with the largest contribution (tf-idf x coefficient)."""
        coef = self.linear.coef_
        if coef.shape[0] == 1:  # two labels: one row, for the second class
            row = coef[0] if label == str(self.linear.classes_[1]) else -coef[0]
        else:
            row = coef[list(self.labels).index(label)]
        vec = x.tocoo()
        scored = sorted(((float(v * row[j]), int(j)) for j, v in zip(vec.col, vec.data, strict=True)),
                        reverse=True)  # fmt: skip
        names = self.vectorizer.get_feature_names_out()
        return [str(names[j]) for score, j in scored[:TOP_WORDS] if score > 0]


class TriageModel:
    """The playbook and severity models over one vocabulary, and the version that names them."""

    def __init__(self, examples: Sequence[Example], version: str) -> None:
        if len({e.playbook for e in examples}) < 2:
            raise ValueError("a triage model needs closed incidents of at least two playbooks")
        texts = [e.text for e in examples]
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1,
                                          token_pattern=r"(?u)\b[A-Za-z][A-Za-z]+\b")  # fmt: skip
        self.vectorizer.fit(texts)
        self.playbook = LabelModel(self.vectorizer, texts, [e.playbook for e in examples])
        self.severity = LabelModel(self.vectorizer, texts, [e.severity for e in examples])
        self.version = version
        self.trained_on = len(examples)
        self.training_hash = training_hash(examples)


def train(examples: Sequence[Example], now: datetime | None = None) -> TriageModel:
    """A model of these examples, versioned ``<hash12>-<UTC time>``."""
    now = now or datetime.now(UTC)
    version = f"{training_hash(examples)[:12]}-{now:%Y%m%dT%H%M%SZ}"
    return TriageModel(examples, version)


def seed_model() -> TriageModel:
    """The model of the generated cases: what a fresh install suggests with."""
    return TriageModel(generated(), SEED_VERSION)
