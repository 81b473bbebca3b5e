"""lifecycle: every (status, operation) pair of the state table, expiry and its time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripquote.errors import QuoteAlreadySent, QuoteStateInvalid, QuoteValidationFailed
from tripquote.quotes.lifecycle import (
    TRANSITIONS,
    Operation,
    QuoteStatus,
    allowed_operations,
    check_sendable,
    check_transition,
    compute_expires_at,
)

S, Op = QuoteStatus, Operation

# The BRIEF's lifecycle table, written out independently of the code under test.
EXPECTED = {
    (S.DRAFT, Op.UPDATE): S.DRAFT,
    (S.DRAFT, Op.DELETE): S.CANCELLED,
    (S.DRAFT, Op.SEND): S.SENT,
    (S.SENT, Op.ACCEPT): S.ACCEPTED,
    (S.SENT, Op.REJECT): S.REJECTED,
    (S.SENT, Op.EXPIRE): S.EXPIRED,
    (S.REJECTED, Op.UPDATE): S.DRAFT,
    (S.REJECTED, Op.DELETE): S.CANCELLED,
}
ALL_PAIRS = list(product(QuoteStatus, Operation))


def test_the_table_is_exactly_the_briefs() -> None:
    assert dict(TRANSITIONS) == EXPECTED


@pytest.mark.parametrize(("status", "operation"), ALL_PAIRS, ids=lambda v: str(v))
def test_every_status_operation_pair(status: QuoteStatus, operation: Operation) -> None:
    if (status, operation) in EXPECTED:
        assert check_transition(status, operation) is EXPECTED[(status, operation)]
        return
    locked = status is S.SENT and operation in (Op.UPDATE, Op.DELETE, Op.SEND)
    expected_error = QuoteAlreadySent if locked else QuoteStateInvalid
    with pytest.raises(expected_error) as caught:
        check_transition(status, operation)
    assert type(caught.value) is expected_error
    assert caught.value.details == {
        "currentStatus": status.value,
        "operation": operation.value,
        "allowedOperations": [op.value for op in Operation if (status, op) in EXPECTED],
    }


@pytest.mark.parametrize(
    ("status", "operation", "message"),
    [
        (S.ACCEPTED, Op.SEND, "SEND is not allowed on an ACCEPTED quote (allowed: nothing)."),
        (S.EXPIRED, Op.UPDATE, "UPDATE is not allowed on an EXPIRED quote (allowed: nothing)."),
        (
            S.DRAFT,
            Op.ACCEPT,
            "ACCEPT is not allowed on a DRAFT quote (allowed: UPDATE, DELETE, SEND).",
        ),
        (S.CANCELLED, Op.DELETE, "DELETE is not allowed on a CANCELLED quote (allowed: nothing)."),
    ],
)
def test_a_refusal_reads_as_english(
    status: QuoteStatus, operation: Operation, message: str
) -> None:
    with pytest.raises(QuoteStateInvalid) as caught:
        check_transition(status, operation)
    assert caught.value.message == message


def test_allowed_operations() -> None:
    assert allowed_operations(S.DRAFT) == [Op.UPDATE, Op.DELETE, Op.SEND]
    assert allowed_operations(S.SENT) == [Op.ACCEPT, Op.REJECT, Op.EXPIRE]
    assert allowed_operations(S.REJECTED) == [Op.UPDATE, Op.DELETE]
    for final in (S.ACCEPTED, S.EXPIRED, S.CANCELLED):
        assert allowed_operations(final) == []


def test_sending_needs_an_item() -> None:
    check_sendable(1)
    with pytest.raises(QuoteValidationFailed) as caught:
        check_sendable(0)
    assert [error["path"] for error in caught.value.details["errors"]] == ["items"]


# --- expiresAt ----------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    ("sent", "days", "zone", "expires"),
    [
        # The BRIEF's example: sent 1 March, 14 days → valid through 15 March → ends 16 March 00:00.
        ("2027-03-01T10:00:00+00:00", 14, "UTC", "2027-03-16T00:00:00+00:00"),
        ("2027-03-01T23:59:59+00:00", 1, "UTC", "2027-03-03T00:00:00+00:00"),
        # Paris: summer time starts 28 March 2027 at 02:00 (+01:00 → +02:00).
        ("2027-03-20T10:00:00+01:00", 14, "Europe/Paris", "2027-04-03T22:00:00+00:00"),
        ("2027-03-13T12:00:00+01:00", 14, "Europe/Paris", "2027-03-27T23:00:00+00:00"),
        ("2027-03-14T12:00:00+01:00", 14, "Europe/Paris", "2027-03-28T22:00:00+00:00"),
        # 23:30 UTC is already the next day in Paris.
        ("2027-03-01T23:30:00+00:00", 14, "Europe/Paris", "2027-03-16T23:00:00+00:00"),
        # New York: DST starts 14 March 2027 (-05:00 → -04:00), ends 7 November (→ -05:00).
        ("2027-03-01T15:00:00-05:00", 14, "America/New_York", "2027-03-16T04:00:00+00:00"),
        ("2027-03-02T03:00:00+00:00", 14, "America/New_York", "2027-03-16T04:00:00+00:00"),
        ("2027-11-01T09:00:00-04:00", 7, "America/New_York", "2027-11-09T05:00:00+00:00"),
        # Santiago skips local midnight on 5 September 2027 (00:00 -04:00 → 01:00 -03:00):
        # the day then starts at 01:00 local, 04:00 UTC.
        ("2027-08-21T12:00:00-04:00", 14, "America/Santiago", "2027-09-05T04:00:00+00:00"),
    ],
)
def test_compute_expires_at(sent: str, days: int, zone: str, expires: str) -> None:
    result = compute_expires_at(_at(sent), days, zone)
    assert result == _at(expires)
    assert result.utcoffset() == timedelta(0)


def test_a_dst_change_shortens_the_window_by_an_hour_not_the_day() -> None:
    sent = _at("2027-03-14T00:00:00+01:00")  # Paris local midnight
    assert compute_expires_at(sent, 14, "Europe/Paris") - sent == timedelta(days=15, hours=-1)


def test_compute_expires_at_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        compute_expires_at(datetime(2027, 3, 1, 10, 0), 14, "UTC")


ZONES = [
    *("UTC", "Europe/Paris", "America/New_York", "America/Santiago"),
    *("Australia/Lord_Howe", "Asia/Kathmandu"),  # 30-minute DST, +05:45
]


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(min_value=1, max_value=90),
    st.sampled_from(ZONES),
)
def test_expiry_is_the_first_instant_after_the_last_valid_local_day(
    sent: datetime, days: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    expires = compute_expires_at(sent, days, zone)
    last_valid_day = sent.astimezone(tz).date() + timedelta(days=days)
    assert expires > sent
    assert (expires - timedelta(microseconds=1)).astimezone(tz).date() == last_valid_day
    assert expires.astimezone(tz).date() == last_valid_day + timedelta(days=1)
