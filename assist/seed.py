"""Generated cases with a known answer, one family per shipped playbook.

The seed model (``assist/model.py``) is trained from these on a fresh install, before the team has
closed incidents of its own, and ``incident triage-eval --generated`` measures every provider on a
held-out part of them. Deterministic (a seeded ``random.Random``) and shipped as code, not as a
binary: the same seed always gives the same cases, so the seed model is the same everywhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

AGENCIES = ("Springfield PD", "Shelbyville Police Department", "Cook County Sheriff's Office",
            "FBI Chicago field office", "Metropolitan Police", "Polizei Berlin",
            "Gendarmerie Lyon", "Ogdenville PD", "Capital City Police")  # fmt: skip
NAMES = ("Jane Roe", "John Smith", "Maria Garcia", "Wei Chen", "Amal Haddad", "Tom Baker",
         "Priya Natarajan", "Lena Fischer")  # fmt: skip
PLACES = {"us": ("Ohio", "Texas", "Chicago", "Seattle"), "eu": ("Berlin", "Paris", "Madrid",
          "Dublin"), "uk": ("London", "Manchester", "Leeds"), "other": ("Toronto", "Sydney")}  # fmt: skip


@dataclass(frozen=True)
class Example:
    """One case: its text, and the answer a person gave (playbook, severity, fields)."""

    text: str
    playbook: str
    severity: str
    fields: dict[str, str] = field(default_factory=dict)


def _account(r: random.Random) -> str:
    return f"acct-{r.randrange(10**6, 10**7)}"


def _email(r: random.Random, domain: str) -> str:
    return f"{r.choice(('officer', 'det', 'sgt', 'legal'))}.{r.randrange(100, 999)}@{domain}"


def _date(r: random.Random) -> str:
    return f"2026-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}"


def _jurisdiction(r: random.Random) -> tuple[str, str]:
    j = r.choice(("us", "us", "eu", "uk", "other"))
    return j, r.choice(PLACES[j])


def _emergency(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    agency, acct = r.choice(AGENCIES), _account(r)
    email = _email(r, "police.gov")
    lead = r.choice(("Emergency disclosure request", "Exigent request", "Urgent emergency request",
                     "Emergency data request"))  # fmt: skip
    why = r.choice(
        (
            "a missing child",
            "a kidnapping in progress",
            "a hostage situation",
            "an imminent threat to life",
            "danger of death",
            "serious physical injury",
        )
    )
    text = (f"{lead} from {agency} ({email}) in {place}: {why}, asking for subscriber data "
            f"and last location for account {acct} without legal process")  # fmt: skip
    return Example(text, "emergency-disclosure", "sev0",
                   {"requester_agency": agency, "requester_email": email, "account_id": acct,
                    "jurisdiction": j})  # fmt: skip


def _preservation(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    agency, acct = r.choice(AGENCIES), _account(r)
    email = _email(r, "da.gov")
    lead = r.choice(("Preservation request", "2703(f) preservation letter", "Request to preserve "
                     "records", "Letter asking us to preserve"))  # fmt: skip
    text = (f"{lead} from {agency} ({email}), {place}: please preserve orders, chat logs and GPS "
            f"for account {acct} for 90 days pending a court order")  # fmt: skip
    sev = "sev1" if r.random() < 0.15 else "sev2"
    if sev == "sev1":
        text += "; a retention deletion job is due tomorrow"
    return Example(text, "preservation", sev,
                   {"requester_agency": agency, "requester_email": email, "account_id": acct,
                    "jurisdiction": j})  # fmt: skip


def _legal_process(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    kind = r.choice(("subpoena", "court_order", "warrant"))
    acct, date = _account(r), _date(r)
    words = {"subpoena": "Grand jury subpoena", "court_order": "2703(d) court order",
             "warrant": "Search warrant"}[kind]  # fmt: skip
    text = (
        f"{words} served on our registered agent in {place} for records of account {acct}, "
        f"return date {date}"
    )
    sev = "sev3" if kind == "subpoena" and r.random() < 0.5 else "sev2"
    if r.random() < 0.4:
        text += ", with a non-disclosure order"
    return Example(text, "legal-process", sev,
                   {"process_type": kind, "return_date": date, "account_id": acct,
                    "jurisdiction": j})  # fmt: skip


def _threat(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    kind = r.choice(("self_harm", "violence"))
    phone = f"+1555{r.randrange(1000000, 9999999)}"
    if kind == "self_harm":
        what = r.choice(
            (
                "says they will kill themselves tonight",
                "posted a suicide note",
                "threatens to end their life",
                "talks about self-harm and has pills",
            )
        )
    else:
        what = r.choice(
            (
                "threatens to shoot the driver",
                "says he will bomb the store",
                "threatens to kill his ex-partner",
                "posted a threat of violence",
            )
        )
    text = f"User in {place} {what}; reachable at {phone}"
    return Example(
        text,
        "threat-self-harm",
        "sev0",
        {"jurisdiction": j, "threat_type": kind, "at_risk_phone": phone},
    )


def _child_safety(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    what = r.choice(
        (
            "apparent CSAM uploaded in chat",
            "child sexual abuse material in a profile",
            "an adult grooming a minor",
            "enticement of a 13-year-old",
            "suspected child trafficking",
            "sexual images of a minor",
        )
    )
    danger = r.random() < 0.3
    text = f"Report of {what}, user in {place}" + ("; the child is in danger now" if danger else "")
    return Example(
        text,
        "child-safety",
        "sev0" if danger else "sev1",
        {"jurisdiction": j, **({"child_in_danger": "yes"} if danger else {})},
    )


def _account_takeover(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    acct = _account(r)
    what = r.choice(("account takeover: email and password changed", "hijacked account, "
                     "delivery address changed", "someone logged into her account and changed the "
                     "phone number", "compromised login, sessions from an unknown device"))  # fmt: skip
    risk = r.choice(
        (
            "ex-partner is stalking her",
            "abuser tracking her orders",
            "impersonating the shopper",
            "domestic violence risk",
        )
    )
    active = r.random() < 0.25
    text = f"{what.capitalize()} on account {acct} in {place}; {risk}"
    if active:
        text += ", active threat right now"
    return Example(
        text,
        "account-takeover",
        "sev0" if active else "sev1",
        {"account_id": acct, "jurisdiction": j},
    )


def _physical_safety(r: random.Random) -> Example:
    j, place = _jurisdiction(r)
    cat, words = r.choice((("sexual_assault", "sexual assault"), ("physical_assault", "assault"),
                           ("serious_injury", "serious injury"), ("harassment", "harassment"),
                           ("threat", "threatened with a knife")))  # fmt: skip
    who = r.choice(("shopper reports", "customer reports", "driver reports"))
    text = f"A {who} {words} during a delivery in {place}"
    in_progress = cat in ("sexual_assault", "physical_assault") and r.random() < 0.5
    text += "; happening now, police called" if in_progress else "; reported after the order"
    sev = "sev0" if in_progress else ("sev2" if cat == "harassment" else "sev1")
    return Example(text, "physical-safety", sev, {"jurisdiction": j, "category": cat})


def _recall(r: random.Random) -> Example:
    klass = r.choice(("class_i", "class_ii", "class_iii"))
    upc = str(r.randrange(10**11, 10**12))
    product = r.choice(("peanut butter", "baby formula", "spinach", "ground beef", "ice cream"))
    cause = r.choice(("salmonella", "listeria", "undeclared allergen", "E. coli", "metal pieces"))
    label = {"class_i": "Class I", "class_ii": "Class II", "class_iii": "Class III"}[klass]
    text = f"FDA {label} recall of {product} (UPC {upc}, lot L{r.randrange(100, 999)}) for {cause}"
    sev = {"class_i": "sev1", "class_ii": "sev2", "class_iii": "sev3"}[klass]
    return Example(text, "product-recall", sev, {"recall_class": klass, "upc": upc})


FAMILIES = (_emergency, _preservation, _legal_process, _threat, _child_safety,
            _account_takeover, _physical_safety, _recall)  # fmt: skip


def generated(per_playbook: int = 60, seed: int = 14) -> list[Example]:
    """``per_playbook`` cases of every shipped playbook, in a fixed order for a given seed."""
    r = random.Random(seed)
    seen: set[str] = set()
    out: list[Example] = []
    for _ in range(per_playbook):
        for family in FAMILIES:
            for _attempt in range(50):  # distinct texts, so no case is both trained and held out
                ex = family(r)
                if ex.text not in seen:
                    break
            seen.add(ex.text)
            out.append(ex)
    return out


def split(examples: list[Example], held_out: float = 0.25, seed: int = 7) -> tuple[list[Example],
                                                                                  list[Example]]:  # fmt: skip
    """A deterministic train / held-out split, stratified by playbook."""
    r = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    by_playbook: dict[str, list[Example]] = {}
    for ex in examples:
        by_playbook.setdefault(ex.playbook, []).append(ex)
    for name in sorted(by_playbook):
        group = list(by_playbook[name])
        r.shuffle(group)
        cut = max(1, round(len(group) * held_out)) if len(group) > 1 else 0
        test += group[:cut]
        train += group[cut:]
    return train, test
