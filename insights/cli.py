"""The team lead's instrument commands: ``incident transparency``, ``incident handbook``,
``incident workload``, ``incident coverage`` and ``incident review``.

Each is a thin shell over a function returning data (``insights/*.py``) and its renderers; errors
are ``typer.BadParameter`` (usage, exit 2) or ``CliError`` (exit 1), one line each.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

import typer

from terminal import CliError

insights_app = typer.Typer()


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def parse_day(text: str, option: str, *, end: bool = False) -> datetime:
    """``2026-01-31`` (a whole day: ``--to`` includes it) or an ISO date-time, as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date (2026-01-31) or ISO date-time", param_hint=option
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end and len(text.strip()) == 10:
        value += timedelta(days=1)
    return value


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    typer.echo(f"written to {output}", err=True)


@insights_app.command("transparency")
def transparency_command(
    from_: str = typer.Option(..., "--from", help="Received on/after: 2026-01-01 or ISO time"),
    to: str | None = typer.Option(None, "--to", help="Received up to this day (included); now"),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart here"),
) -> None:
    """Law-enforcement requests by type, jurisdiction and outcome; child-safety reports; notices
    delayed: the figures of a transparency report."""
    from insights.charts import write_transparency_chart
    from insights.transparency import build_transparency, to_csv, to_json, to_table

    start = parse_day(from_, "--from")
    end = parse_day(to, "--to", end=True) if to else datetime.now(UTC)
    if end <= start:
        raise typer.BadParameter(f"{to!r} is not after --from {from_!r}", param_hint="--to")
    report = build_transparency(start, end)
    render = {Format.table: to_table, Format.csv: to_csv, Format.json: to_json}[format]
    typer.echo(render(report), nl=False)
    if chart is not None:
        write_transparency_chart(report, chart)
        typer.echo(f"chart written to {chart}", err=True)


class BookFormat(StrEnum):
    markdown = "markdown"
    html = "html"
    json = "json"


@insights_app.command("handbook")
def handbook_command(
    format: BookFormat = typer.Option(
        BookFormat.markdown, "--format", help="markdown, html or json"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout"),
    playbook: list[str] = typer.Option([], "--playbook", help="Only these playbooks (repeat)"),
    check: Path | None = typer.Option(
        None, "--check", help="Exit 1 if this written handbook no longer matches the playbooks"
    ),
) -> None:
    """The playbooks as a readable handbook (Markdown or HTML), each with its content hash."""
    from insights.handbook import build_handbook, stale_playbooks, to_html, to_markdown
    from settings import get_settings

    directory = get_settings().playbooks_dir
    if check is not None:
        problems = stale_playbooks(check.read_text(), directory)
        if problems:
            raise CliError(
                f"handbook {check} is stale: {problems[0]} (+{len(problems) - 1} more)"
                if len(problems) > 1
                else f"handbook {check} is stale: {problems[0]}"
            )
        typer.echo(f"handbook {check} matches the playbooks")
        return
    book = build_handbook(directory, playbook)
    known = {page.name for page in book.pages}
    unknown = [name for name in playbook if name not in known]
    if unknown or not book.pages:
        raise typer.BadParameter(
            f"unknown playbook {(unknown or [''])[0]!r}; known: "
            f"{', '.join(sorted(p.name for p in build_handbook(directory).pages))}",
            param_hint="--playbook",
        )
    if format is BookFormat.json:
        _emit(book.model_dump_json(indent=2) + "\n", output)
        return
    _emit(to_html(book) if format is BookFormat.html else to_markdown(book), output)


def _zone(zone: str | None) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from settings import get_settings

    zone = zone or get_settings().business_timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise typer.BadParameter(
            f"{zone!r} is not an IANA time zone", param_hint="--timezone"
        ) from None
    return zone


@insights_app.command("workload")
def workload_command(
    since: str = typer.Option("28d", help="From: 2026-01-31, ISO time, or a look-back (28d)"),
    timezone: str | None = typer.Option(None, help="IANA zone of the hours (business zone)"),
    hours: bool = typer.Option(False, "--hours", help="Every role and hour of the week"),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
) -> None:
    """Workload per role and hour of the week: steps owned, approvals decided, pages answered."""
    from insights.workload import build_workload, workload_csv, workload_table
    from reports.report import parse_since

    try:
        start = parse_since(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from None
    assert start is not None
    report = build_workload(start, datetime.now(UTC), _zone(timezone))
    if format is Format.json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        render = (
            workload_csv if format is Format.csv else (lambda r: workload_table(r, hours=hours))
        )
        typer.echo(render(report), nl=False)


@insights_app.command("coverage")
def coverage_command(
    weeks: int = typer.Option(2, "--weeks", min=1, max=8, help="Weeks ahead (1-8)"),
    lookback: int = typer.Option(8, "--lookback", min=1, max=52, help="Past weeks of demand"),
    timezone: str | None = typer.Option(None, help="IANA zone of the hours (business zone)"),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
    heatmap: Path = typer.Option(Path("coverage.png"), "--heatmap", help="PNG heatmap path"),
) -> None:
    """Who is on call per role and hour of the coming weeks against past demand; gaps flagged."""
    from insights.charts import write_coverage_heatmap
    from insights.coverage import build_coverage, coverage_csv, coverage_table

    coverage = build_coverage(_zone(timezone), weeks=weeks, lookback=lookback)
    if format is Format.json:
        typer.echo(coverage.model_dump_json(indent=2))
    else:
        typer.echo((coverage_csv if format is Format.csv else coverage_table)(coverage), nl=False)
    write_coverage_heatmap(coverage, heatmap)
    typer.echo(f"heatmap written to {heatmap}", err=True)


@insights_app.command("review")
def review_command(
    incident_id: str = typer.Argument(..., help="The incident to review"),
    format: BookFormat = typer.Option(BookFormat.markdown, "--format", help="markdown or json"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout"),
) -> None:
    """Draft the post-incident review from the records: timeline, decisions, SLAs, escalations."""
    from insights.review import ReviewUnavailable, build_review, to_markdown

    if format is BookFormat.html:
        raise typer.BadParameter("a review is markdown or json", param_hint="--format")
    try:
        review = build_review(incident_id)
    except ReviewUnavailable as err:
        raise CliError(str(err)) from None
    _emit(review.model_dump_json(indent=2) + "\n" if format is BookFormat.json
          else to_markdown(review), output)  # fmt: skip


@insights_app.command("metrics")
def metrics_command(
    format: Format = typer.Option(Format.table, "--format", help="table or json"),
) -> None:
    """The records' metrics (open incidents, SLA warnings and breaches, step durations) as text:
    what the API's /metrics and the worker's metrics port serve to Prometheus."""
    from insights.metrics import metrics_table, records_metrics

    if format is Format.csv:
        raise typer.BadParameter("metrics are table or json", param_hint="--format")
    figures = records_metrics()
    typer.echo(figures.model_dump_json(indent=2) if format is Format.json else metrics_table(figures),
               nl=format is Format.json)  # fmt: skip


@insights_app.command("capacity")
def capacity_command(
    since: str = typer.Option("28d", help="From: 2026-01-31, ISO time, or a look-back (28d)"),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
) -> None:
    """Per person: on-call hours, declared project/training/leave hours, work handled, and the
    reactive share of their time."""
    from insights.capacity import build_capacity, capacity_csv, capacity_table
    from reports.report import parse_since

    try:
        start = parse_since(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from None
    assert start is not None
    report = build_capacity(start, datetime.now(UTC))
    if format is Format.json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo((capacity_csv if format is Format.csv else capacity_table)(report), nl=False)
