"""``/api/agents/webhooks``: an agency admin's webhook subscriptions, their deliveries, replay.

Subscriptions belong to an agency and are managed by its admins only (another agent:
AUTHORIZATION_FAILED; another agency's subscription: WEBHOOK_NOT_FOUND). The signing secret
(Standard Webhooks ``whsec_…``) is in the answer of the create and of a rotation only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import Caller, principal_of
from tripquote.agents.repository import Principal
from tripquote.config import webhook_attempt_seconds
from tripquote.db.types import in_utc
from tripquote.deps import CurrentAgent, IdempotencyKey, JsonBody, Runner, WritingAgent
from tripquote.errors import (
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    QuoteValidationFailed,
    RateLimitExceeded,
    SaveOutcomeUnknown,
    TripquoteError,
    WebhookNotFound,
    WebhookUrlRefused,
)
from tripquote.http import json_response
from tripquote.idempotency import Record, StoredResponse, created, idempotent
from tripquote.openapi import BODY, DATABASE, LOCATION, REPLAYED, responses
from tripquote.pagination import (
    DEFAULT_LIMIT,
    ID_CURSOR_PATTERN,
    LIMIT_BOUNDS,
    check_limit,
    decode_id_cursor,
)
from tripquote.quotes.serialize import fmt_instant
from tripquote.routing import TrackedRoute, operation
from tripquote.validation import field_errors, path_id
from tripquote.webhooks import repository, urls
from tripquote.webhooks.schemas import (
    DeliveryListEnvelope,
    ReplayEnvelope,
    ReplayIn,
    RotationIn,
    SubscriptionIn,
    SubscriptionPatch,
    WebhookDeleted,
    WebhookEnvelope,
    WebhookListEnvelope,
    WebhookWithSecret,
    delivery_to_api,
    distinct,
    new_secret,
    subscription_to_api,
)

router = APIRouter(prefix="/api/agents/webhooks", tags=["webhooks"], route_class=TrackedRoute)

_ADMIN: tuple[type[TripquoteError], ...] = (
    AuthenticationFailed,
    AgentNotFound,
    AuthorizationFailed,
)
_ONE: tuple[type[TripquoteError], ...] = (*_ADMIN, WebhookNotFound)
_WRITE: tuple[type[TripquoteError], ...] = (RateLimitExceeded, *DATABASE)

SubscriptionBody = Annotated[Any, Depends(JsonBody(SubscriptionIn))]
PatchBody = Annotated[Any, Depends(JsonBody(SubscriptionPatch))]
RotationBody = Annotated[Any, Depends(JsonBody(RotationIn))]
ReplayBody = Annotated[Any, Depends(JsonBody(ReplayIn))]


M = TypeVar("M", bound=BaseModel)


def _parsed(model: type[M], body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise QuoteValidationFailed(
            "The request body is invalid.", details={"errors": field_errors(exc)}
        ) from None


async def _admin(conn: AsyncConnection, caller: Caller) -> Principal:
    principal = await principal_of(conn, caller)
    if not principal.is_admin:
        raise AuthorizationFailed("Webhook subscriptions are managed by the agency's admins.")
    return principal


def _production(request: Request) -> bool:
    return bool(request.app.state.settings.environment == "production")


def _lookup(request: Request) -> float:
    """How long a URL's host may take to resolve: as long as a delivery attempt may take."""
    return webhook_attempt_seconds(request.app.state.settings)


def _webhook_id(webhook_id: str) -> str:
    return path_id(webhook_id, WebhookNotFound)


async def _subscription(conn: AsyncConnection, principal: Principal, webhook_id: str) -> Any:
    row = await repository.get_subscription(
        conn, agency_id=principal.agency_id, subscription_id=webhook_id
    )
    if row is None:
        raise WebhookNotFound(details={"webhookId": webhook_id})
    return row


@router.post(
    "",
    status_code=201,
    openapi_extra=operation("webhook.create"),
    responses=responses(
        WebhookWithSecret,
        201,
        headers={**LOCATION, **REPLAYED},
        errors=(
            *_ADMIN,
            *BODY,
            WebhookUrlRefused,
            IdempotencyKeyReused,
            IdempotencyKeyInUse,
            *_WRITE,
            SaveOutcomeUnknown,  # its COMMIT may go unanswered
        ),
    ),
)
async def create_webhook(
    request: Request,
    caller: WritingAgent,
    body: SubscriptionBody,
    runner: Runner,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Subscribe ``url`` to ``eventTypes`` of the caller's agency (admins only); 201
    ``{success, webhook, secret}``: the secret (``whsec_…``, Standard Webhooks) is shown this
    once, and again to a retry under the same ``Idempotency-Key`` (one subscription made).
    WEBHOOK_URL_REFUSED when the URL is not allowed (``webhooks/urls.py``)."""

    async def run(record: Record | None) -> StoredResponse:
        wanted = _parsed(SubscriptionIn, body)
        secret = new_secret()

        async def work(conn: AsyncConnection) -> StoredResponse:
            principal = await _admin(conn, caller)  # before the URL: its check may resolve it
            await urls.check(wanted.url, production=_production(request), within=_lookup(request))
            row = await repository.insert_subscription(
                conn,
                agency_id=principal.agency_id,
                url=wanted.url,
                event_types=distinct(list(wanted.eventTypes)),
                enabled=wanted.enabled,
                secret=secret,
                now=datetime.now(UTC),
            )
            answer = {"success": True, "webhook": subscription_to_api(row), "secret": secret}
            return await created(conn, record, answer, location=f"{router.prefix}/{row['id']}")

        return await runner.run(work)

    return await idempotent(request, key=idempotency_key, caller=caller, body=body, run=run)


@router.get(
    "",
    openapi_extra=operation("webhook.list"),
    responses=responses(WebhookListEnvelope, errors=(*_ADMIN, *DATABASE)),
)
async def list_webhooks(caller: CurrentAgent, runner: Runner) -> Response:
    """The agency's subscriptions, oldest first; ``{success, webhooks}`` (no secrets)."""

    async def work(conn: AsyncConnection) -> list[Any]:
        principal = await _admin(conn, caller)
        return await repository.list_subscriptions(conn, agency_id=principal.agency_id)

    rows = await runner.run(work, write=False)
    return json_response({"success": True, "webhooks": [subscription_to_api(r) for r in rows]})


@router.get(
    "/{webhook_id}",
    openapi_extra=operation("webhook.read"),
    responses=responses(WebhookEnvelope, errors=(*_ONE, *DATABASE)),
)
async def get_webhook(caller: CurrentAgent, webhook_id: str, runner: Runner) -> Response:
    """One subscription; ``{success, webhook}``."""
    checked = _webhook_id(webhook_id)

    async def work(conn: AsyncConnection) -> Any:
        return await _subscription(conn, await _admin(conn, caller), checked)

    row = await runner.run(work, write=False)
    return json_response({"success": True, "webhook": subscription_to_api(row)})


@router.patch(
    "/{webhook_id}",
    openapi_extra=operation("webhook.update"),
    responses=responses(WebhookEnvelope, errors=(*_ONE, *BODY, WebhookUrlRefused, *_WRITE)),
)
async def update_webhook(
    request: Request, caller: WritingAgent, webhook_id: str, body: PatchBody, runner: Runner
) -> Response:
    """Change ``url``, ``eventTypes`` or ``enabled`` (the fields sent; none: nothing changes);
    enabling a disabled one clears ``disabledReason`` and makes its pending deliveries due now.
    ``{success, webhook}``."""
    checked = _webhook_id(webhook_id)
    patch = _parsed(SubscriptionPatch, body)
    values: dict[str, Any] = {}
    if patch.url is not None:
        values["url"] = patch.url
    if patch.eventTypes is not None:
        values["event_types"] = distinct(list(patch.eventTypes))
    if patch.enabled is not None:
        values["enabled"] = patch.enabled
        values["disabled_reason"] = None if patch.enabled else "disabled"

    async def work(conn: AsyncConnection) -> Any:
        principal = await _admin(conn, caller)
        current = await _subscription(conn, principal, checked)  # before the URL's check
        if not values:  # nothing sent: nothing changes, updatedAt included
            return current
        if patch.url is not None:
            await urls.check(patch.url, production=_production(request), within=_lookup(request))
        now = datetime.now(UTC)
        row = await repository.update_subscription(
            conn, agency_id=principal.agency_id, subscription_id=checked, values=values, now=now
        )
        if row is None:
            raise WebhookNotFound(details={"webhookId": checked})
        if patch.enabled and not current["enabled"]:
            # What waited while it was disabled (e.g. after a 410) goes now. An enabled one
            # sent `enabled: true` (a client PATCHing its whole state) keeps its retry schedule:
            # made due at once, a failing receiver's deliveries were dead-lettered in seconds.
            await repository.resume_deliveries(conn, subscription_id=checked, now=now)
        return row

    row = await runner.run(work)
    return json_response({"success": True, "webhook": subscription_to_api(row)})


@router.delete(
    "/{webhook_id}",
    openapi_extra=operation("webhook.delete"),
    responses=responses(WebhookDeleted, errors=(*_ONE, *_WRITE)),
)
async def delete_webhook(caller: WritingAgent, webhook_id: str, runner: Runner) -> Response:
    """Delete the subscription and its deliveries (pending ones are not sent);
    ``{success, webhookId}``."""
    checked = _webhook_id(webhook_id)

    async def work(conn: AsyncConnection) -> None:
        principal = await _admin(conn, caller)
        deleted = await repository.delete_subscription(
            conn, agency_id=principal.agency_id, subscription_id=checked
        )
        if not deleted:
            raise WebhookNotFound(details={"webhookId": checked})

    await runner.run(work)
    return json_response({"success": True, "webhookId": checked})


@router.post(
    "/{webhook_id}/rotate-secret",
    openapi_extra=operation("webhook.rotate_secret"),
    responses=responses(WebhookWithSecret, errors=(*_ONE, *BODY, *_WRITE)),
)
async def rotate_secret(
    request: Request, caller: WritingAgent, webhook_id: str, body: RotationBody, runner: Runner
) -> Response:
    """A new signing secret, shown this once; the previous one keeps signing too (both
    signatures sent, Standard Webhooks) for ``overlapSeconds`` (default
    ``TRIPQUOTE_WEBHOOK_SECRET_OVERLAP_SECONDS``). ``{success, webhook, secret}``."""
    checked = _webhook_id(webhook_id)
    rotation = _parsed(RotationIn, body)
    overlap = rotation.overlapSeconds
    if overlap is None:
        overlap = request.app.state.settings.webhook_secret_overlap_seconds
    secret = new_secret()

    async def work(conn: AsyncConnection) -> Any:
        principal = await _admin(conn, caller)
        current = await repository.get_subscription(
            conn, agency_id=principal.agency_id, subscription_id=checked, lock=True
        )
        if current is None:
            raise WebhookNotFound(details={"webhookId": checked})
        now = datetime.now(UTC)
        return await repository.update_subscription(
            conn,
            agency_id=principal.agency_id,
            subscription_id=checked,
            values={
                "secret": secret,
                "previous_secret": current["secret"] if overlap else None,
                "previous_secret_expires_at": now + timedelta(seconds=overlap) if overlap else None,
            },
            now=now,
        )

    row = await runner.run(work)
    answer = {"success": True, "webhook": subscription_to_api(row), "secret": secret}
    return json_response(answer)


DeliveryStatus = Literal["pending", "delivered", "dead"]


@router.get(
    "/{webhook_id}/deliveries",
    openapi_extra=operation("webhook.deliveries"),
    responses=responses(DeliveryListEnvelope, errors=(*_ONE, QuoteValidationFailed, *DATABASE)),
)
async def list_deliveries(
    caller: CurrentAgent,
    webhook_id: str,
    runner: Runner,
    status: DeliveryStatus | None = Query(None),
    limit: int = Query(DEFAULT_LIMIT, json_schema_extra=LIMIT_BOUNDS),
    cursor: str | None = Query(None, json_schema_extra={"pattern": ID_CURSOR_PATTERN}),
) -> Response:
    """The subscription's deliveries, newest first, in cursor pages: event, quote, version,
    status (``pending``, ``delivered``, ``dead``), attempts, the last attempt's response code,
    duration and error; never a response body. ``{success, deliveries, nextCursor}``."""
    checked = _webhook_id(webhook_id)
    check_limit(limit)
    before = decode_id_cursor(cursor) if cursor else None

    async def work(conn: AsyncConnection) -> list[Any]:
        await _subscription(conn, await _admin(conn, caller), checked)
        return await repository.deliveries_page(
            conn, subscription_id=checked, before_id=before, limit=limit + 1, status=status
        )

    rows = await runner.run(work, write=False)
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return json_response(
        {
            "success": True,
            "deliveries": [delivery_to_api(row) for row in page],
            "nextCursor": next_cursor,
        }
    )


@router.post(
    "/{webhook_id}/replay",
    openapi_extra=operation("webhook.replay"),
    responses=responses(ReplayEnvelope, errors=(*_ONE, *BODY, *_WRITE)),
)
async def replay_deliveries(
    caller: WritingAgent, webhook_id: str, body: ReplayBody, runner: Runner
) -> Response:
    """Send again the dead-lettered deliveries (with ``includeDelivered``, the delivered ones
    too) created in [``since``, ``until``): same events, same ``webhook-id``, attempts from 0.
    ``{success, webhookId, replayed, since}``."""
    checked = _webhook_id(webhook_id)
    wanted = _parsed(ReplayIn, body)
    # In UTC; before year 1 or after 9999 once there: the nearest instant inside.
    since = in_utc(wanted.since)
    until = in_utc(wanted.until) if wanted.until is not None else None

    async def work(conn: AsyncConnection) -> int:
        await _subscription(conn, await _admin(conn, caller), checked)
        return await repository.replay(
            conn,
            subscription_id=checked,
            since=since,
            until=until,
            include_delivered=wanted.includeDelivered,
            now=datetime.now(UTC),
        )

    count = await runner.run(work)
    return json_response(
        {
            "success": True,
            "webhookId": checked,
            "replayed": count,
            "since": fmt_instant(since),
        }
    )
