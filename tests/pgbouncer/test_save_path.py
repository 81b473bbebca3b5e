"""The save path's core cases — create, edit, version conflict (409), every lifecycle
transition, idempotent replays, the expiry sweep — run unchanged through PgBouncer in
transaction mode: imported from tests/api, they get this folder's ``world`` (conftest.py)."""

from __future__ import annotations

import pytest

from tests.api.test_edges import test_patch_that_changes_nothing_keeps_the_version
from tests.api.test_lifecycle import (
    test_50_concurrent_creates_with_one_key_make_one_quote,
    test_every_status_operation_pair,
    test_expire_sweep_writes_each_quote_once_and_spares_others,
    test_idempotent_create_replays_and_refuses_reuse,
    test_idempotent_transition,
    test_reject_then_revise_then_resend,
    test_revision_by_version_and_conflict_names_changed_fields,
)
from tests.api.test_versioning import (
    test_50_read_modify_write_clients_lose_no_update,
    test_200_concurrent_patches_from_one_version_have_one_winner,
    test_if_match_header_carries_the_version,
    test_patch_increments_version_and_writes_revision,
    test_stale_body_version_gets_409_with_both_versions,
)

pytestmark = pytest.mark.pgbouncer

__all__ = [
    "test_50_concurrent_creates_with_one_key_make_one_quote",
    "test_50_read_modify_write_clients_lose_no_update",
    "test_200_concurrent_patches_from_one_version_have_one_winner",
    "test_every_status_operation_pair",
    "test_expire_sweep_writes_each_quote_once_and_spares_others",
    "test_idempotent_create_replays_and_refuses_reuse",
    "test_idempotent_transition",
    "test_if_match_header_carries_the_version",
    "test_patch_increments_version_and_writes_revision",
    "test_patch_that_changes_nothing_keeps_the_version",
    "test_reject_then_revise_then_resend",
    "test_revision_by_version_and_conflict_names_changed_fields",
    "test_stale_body_version_gets_409_with_both_versions",
]
