"""`campaign send` as a plain function: campaign file -> one transaction of campaign, message logs and jobs.

Idempotent: a campaign with the same key (the file's `id`, else its name and resolved content) is reported,
not created twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

from dispara.campaigns import store
from dispara.campaigns.contacts import RejectedWriter, rejected_path
from dispara.campaigns.estimate import Estimate, estimate
from dispara.campaigns.model import Campaign, load_campaign
from dispara.campaigns.prepare import Message, Report, prepare
from dispara.campaigns.schedule import SendWindow, first_send_at
from dispara.campaigns.test_send import as_test_campaign, to_test_numbers, to_test_numbers_messages
from dispara.db import Connection
from dispara.db.clock import db_now
from dispara.errors import InputError

PREVIEW_SIZE = 5
CONFIRM_ABOVE = 1000


class Declined(Exception):
    """The operator answered no to the confirmation; nothing was written."""


@dataclass
class SendOutcome:
    campaign: Campaign
    report: Report
    preview: list[Message] = field(default_factory=list)
    record: store.CampaignRecord | None = None
    created: bool = False
    dry_run: bool = False
    scheduled_for: datetime | None = None
    rejected_path: Path | None = None
    estimate: Estimate | None = None
    window: SendWindow | None = None
    notes: list[str] = field(default_factory=list)
    existing: store.CampaignRecord | None = None
    """In a dry run: the campaign a real send of this file would show instead of creating one."""
    test_to: tuple[str, ...] = ()
    fields: list[str] = field(default_factory=list)
    """The contacts' columns, in the file's order."""
    published: Any = None  # what `publish` returned, for a QStash campaign


class Publisher(Protocol):
    """Hands a transport's campaign over once written (QStash); `check` refuses it before, naming `where`."""

    def check(self, where: str) -> None: ...

    def publish(self, conn: Connection, campaign_id: UUID) -> Any: ...


def idempotency_key(campaign: Campaign, limit: int | None, *, new: bool) -> str:
    """The file's id; else a fingerprint of the resolved campaign, the CSV's bytes and the limit."""
    if new:
        return f"new:{uuid4()}"
    if campaign.id:
        return f"id:{campaign.id}"
    digest = hashlib.sha256()
    digest.update(json.dumps(campaign.resolved_document(), sort_keys=True, default=str).encode())
    with campaign.contacts.open("rb") as csv_file:
        for chunk in iter(lambda: csv_file.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(f"limit={limit}".encode())
    return f"auto:{digest.hexdigest()}"


def _window(campaign: Campaign) -> SendWindow | None:
    window = campaign.schedule.window if campaign.schedule else None
    if window is None:
        return None
    return SendWindow(window.start, window.end, window.weekdays, window.zone)


def _start_time(campaign: Campaign, now: datetime, *, start_now: bool) -> datetime | None:
    at = campaign.schedule.at if campaign.schedule else None
    if at is not None and at < now and not start_now:
        raise InputError(
            f"{campaign.source}: schedule.at {at:%Y-%m-%d %H:%M %Z} is in the past: fix it, write `at: now`, "
            "or pass --now to start at once"
        )
    return first_send_at(now, None if start_now else at, _window(campaign))


def _estimate(campaign: Campaign, messages: int, start: datetime) -> Estimate:
    schedule = campaign.schedule
    return estimate(
        messages,
        instances=len(campaign.instances),
        delay_min=campaign.delay.min,
        delay_max=campaign.delay.max,
        start=start,
        window=_window(campaign),
        daily_cap=schedule.daily_cap if schedule else None,
    )


def _keep_preview(messages: Iterator[Message], preview: list[Message], size: int) -> Iterator[Message]:
    for message in messages:
        if len(preview) < size:
            preview.append(message)
        yield message


def _new_campaign(campaign: Campaign, tenant_id: UUID, key: str, start: datetime | None) -> store.NewCampaign:
    schedule = campaign.schedule
    return store.NewCampaign(
        tenant_id=tenant_id,
        name=campaign.name,
        target_audience=campaign.target_audience,
        creative=campaign.creative,
        # A QStash campaign runs once QStash holds all of it; its release times carry the schedule.
        status="pending" if campaign.transport == "qstash" else "scheduled" if start else "processing",
        instances=list(campaign.instances),
        delay_min=campaign.delay.min,
        delay_max=campaign.delay.max,
        scheduled_for=start,
        transport=campaign.transport,
        retries=campaign.retries,
        idempotency_key=key,
        document=json.loads(json.dumps(campaign.resolved_document(), default=str)),
        daily_cap=schedule.daily_cap if schedule else None,
    )


def send_campaign(
    conn: Connection,
    tenant_id: UUID,
    path: Path,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    new: bool = False,
    confirm: Callable[[SendOutcome], bool] = lambda outcome: True,
    preview: int = PREVIEW_SIZE,
    start_now: bool = False,
    test_to: Sequence[str] = (),
    publish: Publisher | None = None,
) -> SendOutcome:
    """Prepare the campaign at `path` and, unless dry_run, write it in one transaction.

    A dry run writes nothing at all, not even the rejected file. `test_to` sends the first contacts'
    messages to these numbers instead, as a new campaign marked test. A `transport: qstash` campaign needs
    `publish`: it is checked before anything is written, and called with the new campaign's id once the
    transaction committed.
    """
    campaign = load_campaign(path)
    _check_transport(campaign, publish)
    test_numbers = to_test_numbers(test_to, campaign.default_country)
    key = f"test:{uuid4()}" if test_numbers else idempotency_key(campaign, limit, new=new)
    existing = store.find_by_key(conn, tenant_id, key)
    if existing and not dry_run:
        return SendOutcome(campaign, Report(), record=existing)
    now = db_now(conn)  # the database's clock, as every schedule decision
    start = None if test_numbers else _start_time(campaign, now, start_now=start_now)
    outcome = SendOutcome(
        campaign, Report(), dry_run=dry_run, scheduled_for=start, existing=existing, test_to=test_numbers
    )
    outcome.window = None if test_numbers else _window(campaign)
    _prepare_and_write(
        conn, campaign, outcome, tenant_id=tenant_id, key=key, limit=limit, preview=preview, confirm=confirm
    )
    if publish is not None and campaign.transport == "qstash" and outcome.created and outcome.record:
        outcome.published = publish.publish(conn, outcome.record.id)
    if dry_run and outcome.report.messages == 0:
        raise _nothing_to_send(campaign, outcome.report, dry_run=True)
    if outcome.estimate is None:
        outcome.estimate = _estimate(campaign, outcome.report.messages, start or now)
    return outcome


def _check_transport(campaign: Campaign, publish: Publisher | None) -> None:
    if campaign.transport == "qstash":
        if publish is None:
            raise InputError(
                f"{campaign.source}: transport: qstash cannot be sent from here; use transport: jobs"
            )
        publish.check(campaign.source)


def _prepare_and_write(
    conn: Connection,
    campaign: Campaign,
    outcome: SendOutcome,
    *,
    tenant_id: UUID,
    key: str,
    limit: int | None,
    preview: int,
    confirm: Callable[[SendOutcome], bool],
) -> None:
    """Prepare every message and, unless a dry run, write the campaign; the results go on `outcome`."""
    test_numbers, dry_run = outcome.test_to, outcome.dry_run
    optouts = store.optouts(conn, tenant_id)
    conn.commit()  # the opt-out read should not hold a snapshot across the long write below
    rejected = None if dry_run or test_numbers else RejectedWriter(campaign.contacts)
    if test_numbers:
        limit = len(test_numbers)
    with prepare(campaign, optouts=optouts, limit=limit, rejected=rejected) as prep:
        outcome.report, outcome.fields = prep.report, list(prep.fields)
        messages = _keep_preview(iter(prep), outcome.preview, preview)
        if test_numbers:
            messages = to_test_numbers_messages(messages, test_numbers)
        if dry_run:
            for _ in messages:
                pass
        else:
            outcome.record, outcome.created = _write(
                conn,
                campaign=campaign,
                tenant_id=tenant_id,
                key=key,
                start=outcome.scheduled_for,
                messages=messages,
                outcome=outcome,
                confirm=confirm,
            )
        outcome.rejected_path = prep.rejected_path
        outcome.notes = prep.notes


def _write(
    conn: Connection,
    *,
    campaign: Campaign,
    tenant_id: UUID,
    key: str,
    start: datetime | None,
    messages: Iterator[Message],
    outcome: SendOutcome,
    confirm: Callable[[SendOutcome], bool],
) -> tuple[store.CampaignRecord | None, bool]:
    """The campaign record, and whether this call created it."""
    new_campaign = _new_campaign(campaign, tenant_id, key, start)
    if outcome.test_to:
        new_campaign = as_test_campaign(new_campaign)
    with conn.transaction():
        campaign_id = store.insert_campaign(conn, new_campaign)
        if campaign_id is None:  # an identical send committed while we were preparing
            return store.find_by_key(conn, tenant_id, key), False
        store.set_contact_details(conn, campaign_id, test=bool(outcome.test_to), fields=outcome.fields)
        queued = campaign.transport == "jobs"
        jobs = store.Jobs(run_at=start, max_attempts=campaign.retries + 1) if queued else None
        total = store.copy_messages(conn, tenant_id, campaign_id, messages, jobs=jobs)
        if total == 0:
            raise _nothing_to_send(campaign, outcome.report, dry_run=False)
        outcome.estimate = _estimate(campaign, total, start or db_now(conn))
        if total > CONFIRM_ABOVE and not confirm(outcome):
            raise Declined
        store.finish_campaign(
            conn,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            total=total,
            instances=list(campaign.instances),
        )
    return store.find_by_key(conn, tenant_id, key), True


def _nothing_to_send(campaign: Campaign, report: Report, *, dry_run: bool) -> InputError:
    top = "; ".join(f"{count:,} x {reason}" for reason, count in report.reasons.most_common(3))
    refused = report.rows_read - report.contacts
    where = ""
    if refused:
        path = rejected_path(campaign.contacts)
        where = f"; a real send writes them to {path}" if dry_run else f"; every refused row is in {path}"
    return InputError(
        f"{campaign.source}: no messages to create: {report.rows_read} rows read, {report.invalid} invalid, "
        f"{report.duplicates} duplicates, {report.opted_out} opted out"
        + (f" (top reasons: {top})" if top else "")
        + where
    )
