"""Every status, message type and error kind the schema allows, spelled out once.

The schema's CHECK constraints say the same (a test compares them); everything else imports from here.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

CampaignStatus = Literal["pending", "scheduled", "processing", "paused", "completed", "cancelled", "failed"]
MessageStatus = Literal["pending", "queued", "sending", "sent", "failed", "cancelled"]
JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
MessageType = Literal["text", "image", "video", "document", "audio"]
ErrorKind = Literal["transient", "permanent", "not_on_whatsapp"]
WebhookEventStatus = Literal["pending", "delivered", "failed"]
Transport = Literal["jobs", "qstash"]

CAMPAIGN_STATUSES: Final[tuple[CampaignStatus, ...]] = get_args(CampaignStatus)
MESSAGE_STATUSES: Final[tuple[MessageStatus, ...]] = get_args(MessageStatus)
JOB_STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
MESSAGE_TYPES: Final[tuple[MessageType, ...]] = get_args(MessageType)
ERROR_KINDS: Final[tuple[ErrorKind, ...]] = get_args(ErrorKind)
WEBHOOK_EVENT_STATUSES: Final[tuple[WebhookEventStatus, ...]] = get_args(WebhookEventStatus)
TRANSPORTS: Final[tuple[Transport, ...]] = get_args(Transport)

# A campaign in one of these is over: nothing of it is sent any more.
CAMPAIGN_FINISHED: Final[frozenset[CampaignStatus]] = frozenset({"completed", "cancelled", "failed"})
# A job in one of these is over: it is never claimed again.
JOB_FINAL: Final[frozenset[JobStatus]] = frozenset({"completed", "failed", "cancelled"})
# Messages in these states may still be sent; anything else (cancelled, sent, failed) is left alone.
MESSAGE_SENDABLE: Final[frozenset[MessageStatus]] = frozenset({"pending", "queued", "sending"})
