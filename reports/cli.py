"""The team lead's commands: ``incident report``, ``incident schedule daily-report``,
``incident schedule coverage-check`` and ``incident schedule reconcile``."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from temporalio.client import Client

from playbooks.durations import parse_duration
from reports.chart import write_chart
from reports.report import (
    build_report,
    known_playbooks,
    load,
    parse_since,
    to_csv,
    to_json,
    to_table,
)
from reports.schedule import (
    create_coverage_schedule,
    create_daily_schedule,
    create_reconcile_schedule,
    reconcile_interval,
)
from settings import Settings, get_settings
from terminal import CliError, run_with_client

reports_app = typer.Typer()


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


@reports_app.command("report")
def report_command(
    since: str | None = typer.Option(None, help="Opened on/after: 2026-01-31, ISO time, or 7d"),
    playbook: list[str] = typer.Option([], "--playbook", help="Only these playbooks (repeat)"),
    format: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
    chart: Path | None = typer.Option(None, "--chart", help="Also write a PNG chart here"),
) -> None:
    """SLA and operations report per playbook, severity and step."""
    try:
        start = parse_since(since)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--since") from None
    _check_playbooks(playbook)
    report = build_report(start, playbook)
    render = {Format.table: to_table, Format.csv: to_csv, Format.json: to_json}[format]
    typer.echo(render(report), nl=False)
    if chart is not None:
        write_chart(report, load(report.since, report.playbooks), chart)
        typer.echo(f"chart written to {chart}", err=True)


def _check_playbooks(names: list[str]) -> None:
    """An unknown playbook is a typo, not an empty report: refuse it, naming the known ones."""
    known = known_playbooks(get_settings().playbooks_dir)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown playbook {unknown[0]!r}; known: {', '.join(sorted(known))}",
            param_hint="--playbook",
        )


def _check_time_of_day(at: str) -> str:
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise typer.BadParameter(f"{at!r} is not a time of day HH:MM (00:00-23:59)")
    return at


def _check_zone(zone: str | None) -> str | None:
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise typer.BadParameter(f"{zone!r} is not an IANA time zone") from None
    return zone


def _check_window(window: str) -> str:
    try:
        parse_duration(window)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    return window


schedule_app = typer.Typer(help="Temporal Schedules of critical-response.", no_args_is_help=True)


def _install(make: Callable[[Client, Settings], Awaitable[str]]) -> None:
    """Create or update one Schedule through the shared client path; print what was done."""
    settings = get_settings()
    typer.echo(run_with_client(lambda client: make(client, settings)))


@schedule_app.command("daily-report")
def daily_report_command(
    at: str = typer.Option("09:00", help="Local time of day, HH:MM", callback=_check_time_of_day),
    timezone: str | None = typer.Option(
        None, help="IANA zone (default: the business timezone)", callback=_check_zone
    ),
    channel: str | None = typer.Option(None, help="Slack channel (default: the team channel)"),
    window: str = typer.Option("24h", help="Look-back of each report", callback=_check_window),
) -> None:
    """Create (or update) the Schedule that posts the report summary every day."""
    _install(
        lambda client, settings: create_daily_schedule(
            client,
            at=at,
            timezone=timezone or settings.business_timezone,
            channel=channel or settings.default_slack_channel,
            window=window,
            task_queue=settings.task_queue,
        )
    )


@schedule_app.command("coverage-check")
def coverage_check_command(
    at: str = typer.Option("08:00", help="Local time of day, HH:MM", callback=_check_time_of_day),
    timezone: str | None = typer.Option(
        None, help="IANA zone (default: the business timezone)", callback=_check_zone
    ),
    policy: str = typer.Option("tns-team-lead", help="The team lead's PagerDuty policy"),
    lookback: int = typer.Option(8, "--lookback", min=1, max=52, help="Past weeks of demand"),
) -> None:
    """Create (or update) the Schedule that pages the team lead about the next 24 hours' gaps."""
    _install(
        lambda client, settings: create_coverage_schedule(
            client,
            at=at,
            timezone=timezone or settings.business_timezone,
            policy=policy,
            task_queue=settings.task_queue,
            lookback_weeks=lookback,
        )
    )


@schedule_app.command("reconcile")
def reconcile_command(
    every: str = typer.Option("15m", help="How often the sweep runs (at least 1m)"),
) -> None:
    """Create (or update) the Schedule that marks incidents terminated or deleted out of band."""
    try:
        interval = reconcile_interval(every)
    except ValueError as err:
        raise CliError(f"--every: {err}") from None
    _install(
        lambda client, settings: create_reconcile_schedule(
            client, task_queue=settings.task_queue, every=interval
        )
    )
