"""`campaign send` as a plain function: campaign file -> one transaction of campaign, message logs and jobs.

Idempotent: a campaign with the same key (the file's `id`, else its name and resolved content) is reported,
not created twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid4

from dispara.campaigns import store
from dispara.campaigns.contacts import RejectedWriter
from dispara.campaigns.model import Campaign, load_campaign
from dispara.campaigns.prepare import Message, Report, prepare
from dispara.campaigns.schedule import SendWindow, first_send_at
from dispara.db import Connection
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


def _start_time(campaign: Campaign, now: datetime) -> datetime | None:
    at = campaign.schedule.at if campaign.schedule else None
    return first_send_at(now, at, _window(campaign))


def _keep_preview(messages: Iterator[Message], preview: list[Message]) -> Iterator[Message]:
    for message in messages:
        if len(preview) < PREVIEW_SIZE:
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
    confirm: Callable[[Report], bool] = lambda report: True,
    publish: Publisher | None = None,
) -> SendOutcome:
    """Prepare the campaign at `path` and, unless dry_run, write it in one transaction.

    A `transport: qstash` campaign needs `publish`: it is checked before anything is written, and called
    with the new campaign's id once the transaction committed.
    """
    campaign = load_campaign(path)
    if campaign.transport == "qstash":
        if publish is None:
            raise InputError(
                f"{campaign.source}: transport: qstash cannot be sent from here; use transport: jobs"
            )
        publish.check(campaign.source)
    key = idempotency_key(campaign, limit, new=new)
    if not dry_run and (existing := store.find_by_key(conn, tenant_id, key)):
        return SendOutcome(campaign, Report(), record=existing)
    start = _start_time(campaign, datetime.now(UTC))
    outcome = SendOutcome(campaign, Report(), dry_run=dry_run, scheduled_for=start)
    optouts = store.optouts(conn, tenant_id)
    conn.commit()  # the opt-out read should not hold a snapshot across the long write below
    with prepare(campaign, optouts=optouts, limit=limit, rejected=RejectedWriter(campaign.contacts)) as prep:
        outcome.report = prep.report
        messages = _keep_preview(iter(prep), outcome.preview)
        if dry_run:
            for _ in messages:
                pass
        else:
            outcome.record, outcome.created = _write(
                conn,
                campaign=campaign,
                tenant_id=tenant_id,
                key=key,
                start=start,
                messages=messages,
                report=prep.report,
                confirm=confirm,
            )
        outcome.rejected_path = prep.rejected_path
    if publish is not None and campaign.transport == "qstash" and outcome.created and outcome.record:
        outcome.published = publish.publish(conn, outcome.record.id)
    if dry_run and outcome.report.messages == 0:
        raise _nothing_to_send(campaign, outcome.report)
    return outcome


def _write(
    conn: Connection,
    *,
    campaign: Campaign,
    tenant_id: UUID,
    key: str,
    start: datetime | None,
    messages: Iterator[Message],
    report: Report,
    confirm: Callable[[Report], bool],
) -> tuple[store.CampaignRecord | None, bool]:
    """The campaign record, and whether this call created it."""
    with conn.transaction():
        campaign_id = store.insert_campaign(conn, _new_campaign(campaign, tenant_id, key, start))
        if campaign_id is None:  # an identical send committed while we were preparing
            return store.find_by_key(conn, tenant_id, key), False
        queued = campaign.transport == "jobs"
        total = store.copy_messages(conn, tenant_id, campaign_id, messages, queued=queued)
        if total == 0:
            raise _nothing_to_send(campaign, report)
        if total > CONFIRM_ABOVE and not confirm(report):
            raise Declined
        if not queued:
            store.finish_unqueued_campaign(
                conn,
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                total=total,
                instances=list(campaign.instances),
            )
            return store.find_by_key(conn, tenant_id, key), True
        store.finish_campaign(
            conn,
            tenant_id=tenant_id,
            campaign_id=campaign_id,
            total=total,
            run_at=start,
            max_attempts=campaign.retries + 1,
            instances=list(campaign.instances),
        )
    return store.find_by_key(conn, tenant_id, key), True


def _nothing_to_send(campaign: Campaign, report: Report) -> InputError:
    return InputError(
        f"{campaign.source}: no messages to create: {report.rows_read} rows read, {report.invalid} invalid, "
        f"{report.duplicates} duplicates, {report.opted_out} opted out"
    )
