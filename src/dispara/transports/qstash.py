"""Publishing a campaign's messages to QStash, which delivers each one to `dispara serve` at its time.

Each instance's messages get release times (`Upstash-Not-Before`) that add random gaps in the campaign's
delay range, kept inside its send window and daily cap; flow control (parallelism 1 per tenant+instance)
keeps one send in flight per number. A message is `queued` once QStash accepted it; anything else stays
`pending` for `dispara redrive` (or `campaign resume`) to publish again under the same deduplication id.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from qstash import QStash
from qstash.errors import DailyMessageLimitExceededError, QStashError, RateLimitExceededError
from qstash.message import BatchJsonRequest, convert_to_batch_messages, prepare_batch_message_body

from dispara.campaigns.schedule import SendWindow, window_from_document
from dispara.config import Settings
from dispara.db import Connection, MessageId, message_id_json
from dispara.db.queries import q
from dispara.db.rows import all_as, all_dicts, one_dict
from dispara.errors import ConfigError

log = logging.getLogger("dispara.qstash")

MESSAGES_PATH = "/qstash/messages"
FAILED_PATH = "/qstash/failed"
CAP_ZONE = ZoneInfo("America/Sao_Paulo")  # the daily cap's day, as the jobs transport counts it
BURST_WAITS = 5  # how many 429 burst limits one publish waits out before leaving the rest pending
MAX_BURST_WAIT_S = 10.0
_STATUS = re.compile(r"status: (\d{3})")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def check_config(settings: Settings, where: str) -> None:
    """Refuse a QStash campaign before anything is written when publishing it cannot work."""
    missing = [
        name
        for name, value in (
            ("DISPARA_PUBLIC_URL (server.public_url)", settings.server.public_url),
            ("QSTASH_TOKEN (qstash.token)", settings.qstash.token),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"{where}: transport: qstash needs {' and '.join(missing)}")


def endpoint(base: str, path: str) -> str:
    return base.rstrip("/") + path


def dedup_id(campaign_id: UUID, message_id: MessageId, round_: int) -> str:
    """Stable per message and round: publishing the same round twice is one QStash message."""
    return f"dispara-{campaign_id}-{message_id}-r{round_}"


def flow_key(tenant_id: UUID, instance: str) -> str:
    """One flow-control key per tenant and WhatsApp number, in the characters QStash keys allow."""
    clean = _KEY_CHARS.sub("_", instance)
    if clean != instance:  # two names that clean up alike must not share a key
        clean += "-" + hashlib.sha256(instance.encode()).hexdigest()[:8]
    return f"dispara-{tenant_id}-{clean}"


# ---- pacing ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """When an instance's messages may go out: gaps in [delay_min, delay_max], a window, a daily cap."""

    delay_min: float
    delay_max: float
    window: SendWindow | None = None
    daily_cap: int | None = None

    def gap(self, rng: random.Random) -> float:
        return rng.uniform(self.delay_min, self.delay_max) if self.delay_max > 0 else 0.0

    def times(self, start: datetime, count: int, rng: random.Random) -> list[datetime]:
        """Release times of `count` consecutive messages of one instance, the first not before `start`."""
        zone = self.window.tz if self.window is not None else CAP_ZONE
        out: list[datetime] = []
        at, day, used = start, None, 0
        for _ in range(count):
            at = self._open(at)
            if self.daily_cap is not None:
                local_day = at.astimezone(zone).date()
                if local_day != day:
                    day, used = local_day, 0
                if used >= self.daily_cap:  # the cap is spent: the next day's first open moment
                    at = self._open(datetime.combine(local_day + timedelta(days=1), dtime(0), zone))
                    day, used = at.astimezone(zone).date(), 0
                used += 1
            out.append(at)
            at = at + timedelta(seconds=self.gap(rng))
        return out

    def _open(self, at: datetime) -> datetime:
        return self.window.next_open(at) if self.window is not None else at


# ---- publishing --------------------------------------------------------------------------------------


@dataclass
class PublishReport:
    """What one publish did: accepted now, left pending (with why), and when the last message goes out."""

    accepted: int = 0
    deduplicated: int = 0
    pending: int = 0
    batches: int = 0
    finish_at: datetime | None = None
    error: str | None = None
    campaigns: list[UUID] = field(default_factory=list)

    def add(self, other: PublishReport) -> None:
        self.accepted += other.accepted
        self.deduplicated += other.deduplicated
        self.pending += other.pending
        self.batches += other.batches
        self.campaigns += other.campaigns
        if other.finish_at is not None and (self.finish_at is None or other.finish_at > self.finish_at):
            self.finish_at = other.finish_at
        self.error = self.error or other.error


@dataclass(frozen=True)
class _Pending:
    id: MessageId
    phone: str
    content: str | None
    instance: str
    round: int


@dataclass(frozen=True)
class _Campaign:
    id: UUID
    tenant_id: UUID
    status: str
    transport: str
    retries: int
    pace: Pace
    scheduled_for: datetime | None


def make_client(settings: Settings) -> QStash:
    """The official SDK client; its own retries cover network errors, our dedup ids make them safe."""
    token = settings.qstash.token
    if not token:
        raise ConfigError("QSTASH_TOKEN (qstash.token) is not set")
    return QStash(
        token.get_secret_value(), base_url=settings.qstash.url, retry={"retries": 3, "backoff": _sdk_backoff}
    )


def _sdk_backoff(attempt: int) -> float:
    return 200.0 * 2.0**attempt  # milliseconds


def _load_campaign(conn: Connection, campaign_id: UUID) -> _Campaign:
    row = one_dict(conn, q("qstash_campaign_for_publish"), {"campaign_id": campaign_id})
    if row is None:
        raise ConfigError(f"campaign {campaign_id} does not exist")
    document = row["document"]
    window = window_from_document(document if isinstance(document, dict) else {})
    return _Campaign(
        row["id"],
        row["tenant_id"],
        row["status"],
        row["transport"],
        int(row["retries"]),
        Pace(float(row["delay_min"]), float(row["delay_max"]), window, row["daily_cap"]),
        row["scheduled_for"],
    )


def _schedule(
    conn: Connection, campaign: _Campaign, pending: Sequence[_Pending], rng: random.Random
) -> dict[MessageId, datetime]:
    """Release times for the pending messages, each instance going on after what QStash already holds."""
    now = datetime.now(UTC)
    start = max(now, campaign.scheduled_for) if campaign.scheduled_for else now
    rows = all_dicts(conn, q("qstash_instance_tail"), {"campaign_id": campaign.id})
    tails: dict[str, datetime] = {row["instance_name"]: row["tail"] for row in rows}
    by_instance: dict[str, list[_Pending]] = {}
    for message in pending:
        by_instance.setdefault(message.instance, []).append(message)
    times: dict[MessageId, datetime] = {}
    for instance, messages in by_instance.items():
        tail = tails.get(instance)
        first = max(start, tail + timedelta(seconds=campaign.pace.gap(rng))) if tail else start
        for message, at in zip(messages, campaign.pace.times(first, len(messages), rng), strict=True):
            times[message.id] = at
    return times


def _request(
    settings: Settings, campaign: _Campaign, message: _Pending, not_before: datetime
) -> BatchJsonRequest:
    base = settings.server.public_url or ""
    return {
        "url": endpoint(base, MESSAGES_PATH),
        "body": {
            "message_id": message_id_json(message.id),
            "phone_number": message.phone,
            "message_content": message.content,
            "instance_name": message.instance,
            "campaign_id": str(campaign.id),
            "tenant_id": str(campaign.tenant_id),
        },
        "retries": campaign.retries,
        "deduplication_id": dedup_id(campaign.id, message.id, message.round),
        "not_before": int(not_before.timestamp()),
        "flow_control": {"key": flow_key(campaign.tenant_id, message.instance), "parallelism": 1},
        "failure_callback": endpoint(base, FAILED_PATH),
    }


def batch_body(requests: Sequence[BatchJsonRequest]) -> str:
    """The /v2/batch body, built by the SDK's own functions: exactly what `batch_json` would send."""
    return prepare_batch_message_body(convert_to_batch_messages(list(requests)))


def _chunks(items: Sequence[_Pending], size: int) -> Iterator[Sequence[_Pending]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def publish_pending(
    conn: Connection,
    settings: Settings,
    campaign_id: UUID,
    *,
    client: QStash | None = None,
    rng: random.Random | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishReport:
    """Publish every pending message of a QStash campaign; commits after each accepted batch."""
    campaign = _load_campaign(conn, campaign_id)
    report = PublishReport(campaigns=[campaign_id])
    pending = all_as(conn, _Pending, q("qstash_unpublished"), {"campaign_id": campaign_id})
    if campaign.transport != "qstash" or campaign.status not in ("pending", "scheduled", "processing"):
        report.pending = len(pending)
        conn.commit()
        return report
    times = _schedule(conn, campaign, pending, rng or random.Random())
    conn.commit()
    client = client or make_client(settings)
    publisher = _Publisher(conn, settings, campaign, client, sleep)
    chunks = list(_chunks(pending, settings.qstash.batch_size))
    for index, chunk in enumerate(chunks):
        try:
            publisher.publish(chunk, times, report)
        except _StopPublishing as stop:
            report.error = str(stop)
            report.pending += sum(len(c) for c in chunks[index + 1 :]) + stop.left
            break
    conn.execute(q("qstash_campaign_published"), {"campaign_id": campaign_id})
    conn.commit()
    return report


class _StopPublishing(Exception):
    def __init__(self, reason: str, left: int) -> None:
        super().__init__(reason)
        self.left = left


@dataclass
class _Publisher:
    conn: Connection
    settings: Settings
    campaign: _Campaign
    client: QStash
    sleep: Callable[[float], None]
    burst_waits: int = 0

    def publish(
        self, chunk: Sequence[_Pending], times: dict[MessageId, datetime], report: PublishReport
    ) -> None:
        requests = [_request(self.settings, self.campaign, m, times[m.id]) for m in chunk]
        answer = self._post(batch_body(requests), len(chunk))
        report.batches += 1
        accepted: list[tuple[MessageId, str, datetime]] = []
        for i, message in enumerate(chunk):
            item = answer[i] if i < len(answer) else None
            if isinstance(item, dict) and item.get("messageId"):
                accepted.append((message.id, str(item["messageId"]), times[message.id]))
                report.deduplicated += bool(item.get("deduplicated"))
            else:
                report.pending += 1
                error = item.get("error") if isinstance(item, dict) else "no answer for it"
                log.warning("QStash did not accept message %d: %s", message.id, error)
        if accepted:
            ids, qids, nbs = (list(col) for col in zip(*accepted, strict=True))
            self.conn.execute(q("qstash_mark_queued"), {"ids": ids, "qids": qids, "nbs": nbs})
            self.conn.commit()
            report.accepted += len(accepted)
            last = max(nbs)
            report.finish_at = last if report.finish_at is None else max(report.finish_at, last)

    def _post(self, body: str, size: int) -> list[Any]:
        while True:
            try:
                answer = self.client.http.request(
                    path="/v2/batch", method="POST", headers={"Content-Type": "application/json"}, body=body
                )
            except RateLimitExceededError as exc:
                if self.burst_waits >= BURST_WAITS:
                    raise _StopPublishing(f"QStash rate limit: {exc}", size) from None
                self.burst_waits += 1
                self.sleep(reset_wait(exc.reset, MAX_BURST_WAIT_S))
                continue
            except DailyMessageLimitExceededError as exc:
                raise _StopPublishing(
                    f"QStash daily message limit reached (resets {exc.reset})", size
                ) from None
            except QStashError as exc:
                raise self._refused(exc, size) from None
            except httpx.HTTPError as exc:
                raise _StopPublishing(f"QStash unreachable: {type(exc).__name__}", size) from None
            return answer if isinstance(answer, list) else []

    def _refused(self, exc: QStashError, size: int) -> Exception:
        match = _STATUS.search(str(exc))
        status = int(match.group(1)) if match else None
        if status == 401:
            return ConfigError(
                "QStash refused the token (HTTP 401): check QSTASH_TOKEN and QSTASH_URL's region"
            )
        return _StopPublishing(f"QStash refused the batch (HTTP {status or '?'})", size)


def reset_wait(reset: str | None, cap: float, now: float | None = None) -> float:
    """Seconds until a rate limit resets: the header holds a unix time (s or ms) or a number of seconds."""
    try:
        value = float(reset or "")
    except ValueError:
        return 1.0
    now = time.time() if now is None else now
    if value > 1e12:
        value = value / 1000 - now
    elif value > 1e9:
        value -= now
    return min(max(value, 0.1), cap)


def republish(
    conn: Connection, settings: Settings, tenant_id: UUID, *, client: QStash | None = None
) -> PublishReport:
    """Publish what QStash does not hold for every running QStash campaign of the tenant (for redrive)."""
    total = PublishReport()
    ids = [row[0] for row in conn.execute(q("qstash_campaigns_to_republish"), {"tenant_id": tenant_id})]
    conn.commit()
    if not ids:
        return total
    client = client or make_client(settings)
    for campaign_id in ids:
        total.add(publish_pending(conn, settings, campaign_id, client=client))
    return total


@dataclass(frozen=True)
class CampaignPublisher:
    """What `campaign send` calls for a QStash campaign: check the settings first, publish once written."""

    settings: Settings

    def check(self, where: str) -> None:
        check_config(self.settings, where)

    def publish(self, conn: Connection, campaign_id: UUID) -> PublishReport:
        return publish_pending(conn, self.settings, campaign_id)


def _is_qstash(conn: Connection, campaign_id: UUID) -> bool:
    row = one_dict(conn, q("qstash_campaign_for_publish"), {"campaign_id": campaign_id})
    conn.commit()
    return row is not None and row["transport"] == "qstash"


def resume(conn: Connection, settings: Settings, campaign_id: UUID) -> PublishReport | None:
    """After `campaign resume`: republish what deliveries handed back while it was paused (QStash only)."""
    if not _is_qstash(conn, campaign_id):
        return None
    return publish_pending(conn, settings, campaign_id)


def retry(
    conn: Connection, settings: Settings, campaign_id: UUID, kinds: list[str]
) -> tuple[int, PublishReport] | None:
    """`campaign retry` of a QStash campaign: its failed messages of `kinds` published again (QStash only)."""
    if not _is_qstash(conn, campaign_id):
        return None
    with conn.transaction():
        row = conn.execute(q("qstash_retry_failed"), {"campaign_id": campaign_id, "kinds": kinds}).fetchone()
    count = int(row[0]) if row else 0
    return count, publish_pending(conn, settings, campaign_id) if count else PublishReport()


def republish_configured(settings: Settings) -> PublishReport | None:
    """For `redrive`: republish the tenant's pending QStash messages; None when QStash is not configured."""
    if not (settings.qstash.token and settings.server.public_url):
        return None
    from dispara.db.connect import connect
    from dispara.tenants import tenant_id

    with connect(settings) as conn:
        return republish(conn, settings, tenant_id(conn, settings.tenant))
