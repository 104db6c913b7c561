"""The seam between the worker and whatever delivers WhatsApp messages (Evolution API or the outbox).

Also the instance-level errors, which tell the worker to pause an instance instead of failing a message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from dispara.errors import ExitCode, PermanentServiceError, TransientServiceError
from dispara.states import MessageType

InstanceState = Literal["open", "close", "connecting", "unknown"]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to one number through one instance; `audio` means a voice note (PTT)."""

    instance: str
    number: str
    message_type: MessageType
    text: str | None
    media_url: str | None
    caption: str | None
    file_name: str | None
    mimetype: str | None = None


@dataclass(slots=True)
class SendResult:
    """`key_id` is the provider's message id ("" if a 2xx reply carried none); `response` is its full JSON."""

    key_id: str
    response: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Sender(Protocol):
    """What the worker needs from a provider. Implementations must be safe to share between threads."""

    label: str

    def send(self, msg: OutgoingMessage) -> SendResult:
        """Deliver one message, or raise Permanent/TransientServiceError or InstanceUnavailableError."""
        ...

    def instance_state(self, instance: str) -> str:
        """One of "open", "close", "connecting", "unknown"; only "open" means sends can work."""
        ...

    def close(self) -> None: ...


class NoAnswerError(TransientServiceError):
    """Evolution itself gave no answer: the network failed, a timeout expired, or a gateway answered 504.

    `maybe_delivered` says whether the request may have reached Evolution, and so whether the message may
    already be out. False: provably not (the connection could not be opened, no byte was sent), so sending
    it again cannot duplicate it. True: it may have (a timeout or a dropped connection after the request
    was written, a gateway that gave up waiting for Evolution's reply); the sender never resends those
    itself, and whoever does must accept that the number may get the message twice.
    Every other error a sender raises is an answer from Evolution: the message was not sent.
    """

    def __init__(self, message: str, *, maybe_delivered: bool, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.maybe_delivered = maybe_delivered


class InstanceUnavailableError(TransientServiceError):
    """The WhatsApp *instance* cannot send right now; the message itself is fine.

    The worker should put the message back without spending one of its attempts and pause the instance.
    `permanent=False`: the condition usually heals (socket reconnects, server reloads the instance), so a
    short pause with backoff is right. `permanent=True`: it will not heal without an operator (the instance
    does not exist, the server is not activated): pause the instance until someone acts, and say so loudly.
    The message stays retryable (`transient` is True) either way: a misconfiguration never burns a campaign.
    """

    def __init__(
        self,
        message: str,
        *,
        instance: str,
        status: int | None = None,
        retry_after: float | None = None,
        permanent: bool = False,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.instance = instance
        self.permanent = permanent


class ServerUnreachableError(InstanceUnavailableError):
    """The Evolution server cannot be reached (connection refused, DNS, TLS, a proxy's own 502/503 page).

    Nothing reached WhatsApp, so no attempt is spent: the instance rests with backoff and tries again.
    """

    maybe_delivered = False  # as on NoAnswerError: the request provably never got to Evolution


class CredentialsRejectedError(InstanceUnavailableError):
    """The server refused our API key (401): every send on it would fail alike, so this is a configuration
    error of the sender. The worker puts the message back unspent and pauses the tenant's campaigns.
    """

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, *, instance: str, status: int | None = 401) -> None:
        super().__init__(message, instance=instance, status=status, permanent=True)


class UnknownInstanceError(InstanceUnavailableError):
    """Evolution answered 404 `The "x" instance does not exist`: wrong name, or the instance was deleted."""

    def __init__(self, message: str, *, instance: str, status: int | None = 404) -> None:
        super().__init__(message, instance=instance, status=status, permanent=True)


class ServerNotActivatedError(InstanceUnavailableError):
    """Evolution 2.4.0's licence gate (503 LICENSE_REQUIRED): no instance can send until it is activated."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, *, instance: str, status: int | None = 503) -> None:
        super().__init__(message, instance=instance, status=status, permanent=True)


class NotOnWhatsAppError(PermanentServiceError):
    """The number has no WhatsApp account (Evolution's 400 `exists:false`): fail the message, never retry it.

    `not_on_whatsapp` is what the worker looks for to record the failure as "not_on_whatsapp";
    `number` is the number as the server reported it (or as sent, if it reported none).
    """

    not_on_whatsapp = True

    def __init__(self, message: str, *, number: str | None = None, status: int | None = 400) -> None:
        super().__init__(message, status=status)
        self.number = number
