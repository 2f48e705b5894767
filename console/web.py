"""What every console page shares: the templates, the times (UTC, with the reader's local time
added in the page), the signed-in person and the navigation, and one way to render a page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api import authz
from console.session import Viewer

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def utc_text(value: datetime | None) -> str:
    if value is None:
        return "-"
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    if value is None:
        return ""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    delta = timedelta(seconds=round(seconds))
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def phase(due: datetime | None, warn: datetime | None, now: datetime) -> tuple[str, str, str]:
    """A deadline's phase at ``now`` (``ok``, ``warned``, ``breached``), its icon and words; the
    page's script keeps them ticking from the same deadlines."""
    if due is None:
        return "none", "", "-"
    left = (due - now).total_seconds()
    if left <= 0:
        return "breached", "\u2716", f"breached, overdue {duration(-left)}"
    if warn is not None and now >= warn:
        return "warned", "\u26a0", f"warning, {duration(left)} left"
    return "ok", "\u25f7", f"{duration(left)} left"


templates.env.filters["utc"] = utc_text
templates.env.globals["phase"] = phase
templates.env.filters["iso"] = iso
templates.env.filters["duration"] = duration

NAV = [
    ("incidents", "Incidents", "list"),
    ("approvals", "Approvals", "list"),
    ("audit", "Auditor", "export"),
    ("lead", "Team lead", "report"),
]


def nav_for(who: Viewer) -> list[tuple[str, str]]:
    """The pages this person's roles open (the server checks each page again)."""
    return [(path, label) for path, label, action in NAV if who.roles & authz.ACTIONS[action]]


def page(request: Request, name: str, who: Viewer | None, status: int = 200,
         **context: Any) -> HTMLResponse:  # fmt: skip
    """Render ``name`` with the person, their navigation and the live stream's address."""
    settings = request.app.state.settings
    ctx = {
        "who": who,
        "nav": nav_for(who) if who else [],
        "now": datetime.now(UTC),
        "oidc": bool(settings.oidc_issuer),
        **context,
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status)
