# ruff: noqa: S608  (SQL composed at import from constant fragments; every value is bound)
"""The proposal statements: each write ONE guarded statement, built from the quote store's
fragments (``quotes/sql.py``). The client's answer is the quotes' own versioned write
(``versioned_update`` and ``revision``) guarded by the link, which it locks first: a revoke,
a second answer or a re-send waits for it, or it finds the link ended and writes nothing.
The send's link is made by ``quotes/sql.py`` ``TRANSITION`` (``_LINKS``)."""

from __future__ import annotations

from tripquote.agents import repository as agents
from tripquote.quotes.sql import (
    CLIENT,
    FACT_COLUMNS,
    FACTS_FROM,
    QUOTE_FACTS,
    Statement,
    may_act,
    merged_snapshot,
    outbox,
    status_now,
    versioned_update,
)
from tripquote.webhooks.events import VIEWED

_LINK_COLUMNS = """p.id AS link_id, p.quote_id, p.version AS link_version, p.link_nonce,
       p.proposal::text AS proposal, p.proposal_hash, p.created_at AS link_created_at,
       p.expires_at AS link_expires_at, p.ended_at, p.ended_reason, p.views,
       p.first_viewed_at, p.last_viewed_at, p.answer, p.answered_at, p.signer_name,
       p.decline_reason, p.answered_hash"""

VIEW = Statement.of(
    f"""
WITH counted AS (
    -- A page view counts on an open link; never on the quote (its version stays).
    UPDATE proposals p SET views = p.views + 1, last_viewed_at = :now,
                           first_viewed_at = coalesce(p.first_viewed_at, :now)
     WHERE p.token_hash = :link_hash AND p.ended_at IS NULL AND :count_view
    RETURNING p.quote_id, p.version, p.views
), first_view AS (
    -- The link's first view is the quote's event (the version sent; the quote unchanged).
    SELECT q.agency_id, q.id, c.version
      FROM counted c JOIN quotes q ON q.id = c.quote_id
     WHERE c.views = 1
), {outbox("first_view", f"'{VIEWED}'", actor="'client'")}
SELECT {_LINK_COLUMNS}, q.version AS quote_version, {status_now("q")} AS quote_status
  FROM proposals p JOIN quotes q ON q.id = p.quote_id
 WHERE p.token_hash = :link_hash
"""
)
"""The link ``:link_hash`` with its proposal and its quote's version and status as of ``:now``;
a view counted when ``:count_view`` and the link is open, its first one a ``quote.viewed``
event (with ``:correlation_id``) in the same statement."""

_ANSWER_WRITE = versioned_update("", "true", status=status_now("q"), snapshot=merged_snapshot())

ANSWER = Statement.of(
    f"""
WITH link AS (
    -- Locked first: a revoke, a re-send or a second answer of the same link waits, then
    -- finds it answered; one that went first leaves it ended (no row: nothing written).
    SELECT p.id, p.quote_id, p.version, p.proposal_hash FROM proposals p
     WHERE p.token_hash = :link_hash AND p.ended_at IS NULL AND p.answer IS NULL
       FOR UPDATE
), target AS (
    SELECT l.quote_id AS id, l.version FROM link l WHERE l.proposal_hash = :shown_hash
), {_ANSWER_WRITE}, answered AS (
    UPDATE proposals p SET answer = :target, answered_at = :now, signer_name = :signer_name,
                           decline_reason = :decline_reason, answer_ip = :answer_ip,
                           answer_user_agent = :answer_user_agent, answered_hash = :shown_hash
      FROM saved s
     WHERE p.id = (SELECT id FROM link)
)
SELECT EXISTS (SELECT 1 FROM saved) AS written, (SELECT quote_id FROM link) AS quote_id
"""
)
"""The client's answer on link ``:link_hash``, showing ``:shown_hash``: the quote at the
link's version moves SENT → ``:target`` (a revision by ``:actor``), and the link records the
signer, when, IP, user agent and the hash answered."""

_LATEST = f"""WITH {agents.CALLER}, {QUOTE_FACTS}, {CLIENT}, latest AS (
    SELECT p.* FROM proposals p WHERE p.quote_id = :quote_id
     ORDER BY p.created_at DESC, p.id DESC LIMIT 1
)"""

_LATEST_COLUMNS = _LINK_COLUMNS.replace("p.", "latest.")

PROPOSAL_OF = Statement.of(
    f"""
{_LATEST}
SELECT {FACT_COLUMNS}, {_LATEST_COLUMNS}
  FROM {FACTS_FROM} LEFT JOIN latest ON true
"""
)
"""The facts about the caller and the quote, and the quote's latest proposal (none: nulls)."""

REVOKE = Statement.of(
    f"""
{_LATEST}, ended AS (
    UPDATE proposals p SET ended_at = :now, ended_reason = 'REVOKED'
      FROM latest l, caller, cur
     WHERE p.id = l.id AND {may_act("caller", "cur")} AND p.ended_at IS NULL
       AND p.answer IS NULL
    RETURNING p.ended_at
)
SELECT EXISTS (SELECT 1 FROM ended) AS written, {FACT_COLUMNS}, {_LATEST_COLUMNS},
       (SELECT ended_at FROM ended) AS revoked_at
  FROM {FACTS_FROM} LEFT JOIN latest ON true
"""
)
"""Revoke the quote's latest link, if the caller may act on the quote, the link is open and
unanswered (an answer holding its lock goes first: then nothing is written)."""
