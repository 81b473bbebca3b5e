# ruff: noqa: S608  (SQL composed at import from constant fragments; every value is bound)
"""The quote store's SQL: one guarded statement per write, built from shared fragments.

Every write is ONE statement: ``saved`` (the version-checked write) and ``revision`` (the
history row) come from ``versioned_update``/``revision``, written once here and used by every
write; the statement's last SELECT returns whether it wrote and the facts it saw (the caller,
the quote's visibility, status, version, the client, the quota bound), from which
``store.explain`` tells a refusal's error. Python decides the lifecycle (``lifecycle.py``) and
passes the decision as parameters (``:from_statuses``, ``:target``, a send's ``:today`` and
expiry instants); SQL enforces what only the database can: who may act, the version, the
quota bound, whether anything changes, and the send's rules on the dates it reads
(``trip_started``, ``offer_days``).

Parameters are named (``:name``); ``Statement`` turns them into asyncpg's ``$n``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tripquote.agents import repository as agents
from tripquote.json import dumps
from tripquote.quotes.serialize import API_FIELDS, fmt_instant
from tripquote.webhooks.events import event_type_sql

_NAME = re.compile(r"(?<![:\w]):([a-z_]+)")


@dataclass(frozen=True, slots=True)
class Statement:
    """SQL text with ``:name`` parameters, compiled to ``$n`` once."""

    text: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> Statement:
        """Compile ``sql``: each distinct ``:name`` becomes ``$n`` in order of first use."""
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        return cls(_NAME.sub(number, sql), tuple(names))

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional arguments for ``values`` (KeyError names a missing parameter)."""
        return tuple(values[name] for name in self.names)


def past_expiry(q: str) -> str:
    """Whether the offer of quote alias ``q`` has ended as of ``:now`` (the one place this
    instant comparison is written; an index condition on ``expires_at`` in the sweep)."""
    return f"{q}.expires_at <= :now"


def status_now(q: str) -> str:
    """The status of quote alias ``q`` as of ``:now``: a SENT quote past expiry is EXPIRED."""
    return (
        f"(CASE WHEN {q}.status = 'SENT' AND {past_expiry(q)} THEN 'EXPIRED' ELSE {q}.status END)"
    )


def changed_since(q: str) -> str:
    """Whether quote alias ``q`` changed at or after ``:updated_since``: written then, or read
    EXPIRED since then (its offer ended at ``expires_at`` with no write until the sweep's), so
    a client syncing with ``updatedSince`` sees a quote's every change of status."""
    return (
        f"({q}.last_modified_at >= :updated_since OR ({q}.status = 'SENT' AND "
        f"{q}.expires_at >= :updated_since AND {past_expiry(q)}))"
    )


def may_act(a: str, o: str) -> str:
    """Caller ``a`` (a row alias) may act on record ``o`` (a quote or a client)."""
    return may_act_of(o, agency=f"{a}.agency_id", agent=f"{a}.id", role=f"{a}.role")


def may_act_of(o: str, *, agency: str, agent: str, role: str) -> str:
    """The caller of agency ``agency``, agent id ``agent`` and role ``role`` (SQL expressions)
    may act on record ``o``: its own, or its agency's for an admin (the one place this rule
    is written)."""
    return f"({o}.agency_id = {agency} AND ({o}.agent_id = {agent} OR {role} = 'admin'))"


QUOTE_FACTS = f"""cur AS (
    SELECT q.id, q.agency_id, q.agent_id, q.client_id, q.version, {status_now("q")} AS status,
           q.last_modified_by, q.last_modified_at, q.trip_name, q.destination, q.start_date,
           q.end_date, q.travelers, q.currency, q.markup_percent, q.discount,
           q.expires_in_days, q.notes
      FROM quotes q WHERE q.id = :quote_id
)"""
"""The quote as the statement saw it: its facts, and its content an edit compares."""

FACT_COLUMNS = f"""caller.id IS NOT NULL AS agent_ok, {agents.TOKEN_REVOKED} AS token_revoked,
       caller.timezone AS agent_timezone,
       cur.id IS NOT NULL AND caller.agency_id IS NOT DISTINCT FROM cur.agency_id AS visible,
       coalesce({may_act("caller", "cur")}, false) AS may_act,
       cur.status AS fact_status, cur.version AS fact_version,
       cur.last_modified_by AS fact_by, cur.last_modified_at AS fact_at,
       cur.agent_id AS fact_owner,
       :client_id::varchar IS NULL OR :client_id IS NOT DISTINCT FROM cur.client_id
           AS client_kept,
       client.agent_id IS NOT NULL
           AND caller.agency_id IS NOT DISTINCT FROM client.agency_id AS client_visible,
       coalesce({may_act("caller", "client")}, false) AS client_may_use"""
"""The facts every quote operation returns; ``store.explain`` reads them."""

FACTS_FROM = """(SELECT 1) one LEFT JOIN caller ON true LEFT JOIN cur ON true
  LEFT JOIN client ON true"""

CLIENT = "client AS (SELECT c.agent_id, c.agency_id FROM clients c WHERE c.id = :client_id)"


_FIELDS = "ARRAY[" + ", ".join(f"'{name}'" for name in API_FIELDS) + "]"


def outbox(source: str, event_type: str, actor: str = ":actor") -> str:
    """The transactional outbox, part of a write's own statement: ``event``, one event per row
    of CTE ``source`` (columns ``agency_id``, ``id``: the quote's, ``version``), of type
    ``event_type`` (an SQL expression) by ``actor``, with ``:now`` and ``:correlation_id``
    (its quote snapshot is the revision's of that version, not copied; its ``xact``, the
    writing transaction's id, is the column's default). Written by the change's own
    statement: a change rolled back has none. Its deliveries are fanned out after the commit
    by the delivery workers (``webhooks/sql.py`` ``FAN_OUT``), not by this statement."""
    return f"""event AS (
    INSERT INTO events (id, type, occurred_at, agency_id, quote_id, version, actor,
                        correlation_id)
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', ''), {event_type},
           :now, s.agency_id, s.id, s.version, {actor}, :correlation_id
      FROM {source} s
)"""


OUTBOX = outbox("saved", event_type_sql(":operation"))
"""The outbox of every quote write (``revision``): each saved row's event, its type from
``:operation`` (``webhooks/events.py``)."""


def revision(snapshot: str, merge: str = "NULL") -> str:
    """``revision``: the history row of a write, one per committed version, for each saved row
    ``s``, whose snapshot is ``snapshot`` (a ``json`` expression on ``s``: the version's API
    form, keys in API order; ``json``, not ``jsonb``: every value's text is kept as written),
    marked with the write's ``:save_id`` (``OUTCOME`` finds it after an unanswered COMMIT);
    ``merge``: what a merged save merged (``quotes/merge.py``), NULL for any other write;
    then its event (``OUTBOX``)."""
    return f"""revision AS (
    INSERT INTO quote_revisions (quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot, save_id, merge)
    SELECT s.id, s.version, :operation, s.status, :actor,
           :correlation_id, :now, {snapshot}, :save_id, {merge}
      FROM saved s
    RETURNING snapshot
), {OUTBOX}"""


def merged_snapshot(expires_at: str = "") -> str:
    """The snapshot of a write that knows only what it changes (a transition, the sweep): the
    previous version's with ``:changes`` laid over it and the row's status and version.
    ``expires_at``: the ``expiresAt`` value when a row's own decides it."""
    value = "coalesce(c.value, p.value)"
    expires = f"coalesce({expires_at}, {value})" if expires_at else value
    return f"""(SELECT json_object_agg(f.key, CASE f.key WHEN 'status' THEN to_json(s.status)
                                                     WHEN 'version' THEN to_json(s.version)
                                                     WHEN 'expiresAt' THEN {expires}
                                                     ELSE {value} END
                                   ORDER BY f.n)
              FROM unnest({_FIELDS}) WITH ORDINALITY AS f(key, n)
              LEFT JOIN json_each(:changes::json) c ON c.key = f.key
              LEFT JOIN json_each((SELECT r.snapshot FROM quote_revisions r
                                    WHERE r.quote_id = s.id AND r.version = s.version - 1)) p
                     ON p.key = f.key)"""


def composed_snapshot(from_row: Mapping[str, str]) -> str:
    """The snapshot of a write that knows the whole API form but the values only the row
    knows: key ``k`` of ``from_row`` is that ``json`` expression on ``s``, every other key (in
    API order) the next element of ``:parts``, its value's JSON text (``snapshot_parts``).
    Concatenated, not parsed and merged: the only JSON work is the final validation."""
    pieces: list[str] = []
    part = 0
    for key in API_FIELDS:
        if key in from_row:
            value = f"({from_row[key]})::text"
        else:
            part += 1
            value = f"(:parts::text[])[{part}]"
        pieces.append(f"'{'{' if not pieces else ','}\"{key}\":' || {value}")
    return "(" + "\n     || ".join(pieces) + " || '}')::json"


def snapshot_parts(quote: Mapping[str, Any], from_row: Mapping[str, str]) -> list[str]:
    """The ``:parts`` of ``composed_snapshot(from_row)``: the JSON text of each other key's
    value of ``quote`` (the API form), in API order."""
    return [dumps(quote[key]).decode() for key in API_FIELDS if key not in from_row]


def versioned_update(
    sets: str, guard: str, *, status: str, snapshot: str, merge: str = "NULL"
) -> str:
    """``saved``: the one version-checked UPDATE of the rows in ``target (id, version)`` whose
    status (``status``, an expression on ``q``) is one of ``:from_statuses``, where ``guard``
    holds; it sets ``sets``, the status ``:target``, who and when, and the next version.
    Then ``revision(snapshot, merge)``."""
    return f"""saved AS (
    UPDATE quotes q
       SET {sets}status = :target, last_modified_by = :actor, last_modified_at = :now,
           version = q.version + 1
      FROM target t
     WHERE q.id = t.id AND q.version = t.version AND {status} = ANY(:from_statuses::text[])
       AND {guard}
    RETURNING q.*
), {revision(snapshot, merge)}"""


ONE_TARGET = "target AS (SELECT :quote_id::varchar AS id, :expected::int AS version)"

ITEMS_JSON = """json_to_recordset(:items::json) AS x(id text, position int, type text,
           description text, quantity int, unit_price numeric, line_total numeric, details json)"""


def item_id(i: str) -> str:
    """The id (API) of item row ``i``: its ``item_id``, or its row id when it has none (a row
    written before migration 0008, or by an older release); the one place this is read."""
    return f"coalesce({i}.item_id, {i}.id)"


ITEMS_OF = f"""(SELECT coalesce(json_agg(i ORDER BY i.position), '[]')::text
          FROM (SELECT {item_id("r")} AS api_id, r.* FROM quote_items r
                 WHERE r.quote_id = q.id) i)"""

CONTENT_COLUMNS = (
    "trip_name, destination, start_date, end_date, travelers, currency, markup_percent, "
    "discount, expires_in_days, notes, subtotal, markup_amount, total"
)
CONTENT_VALUES = (
    ":trip_name, :destination, :start_date, :end_date, :travelers, :currency, "
    ":markup_percent, :discount, :expires_in_days, :notes, :subtotal, :markup_amount, :total"
)


def changes(**values: Any) -> dict[str, Any]:
    """The snapshot keys a write changes besides status and version, instants in API form."""
    return {k: fmt_instant(v) if k.endswith("At") else v for k, v in values.items()}


def _insert_items(source: str, api_id: str) -> str:
    return f"""INSERT INTO quote_items (item_id, quote_id, position, type, description,
                             quantity, unit_price, line_total, details)
    SELECT {api_id}, s.id, x.position, x.type, x.description,
           x.quantity, x.unit_price, x.line_total, x.details
      FROM saved s, {source}"""


_SENT_IDS = """ARRAY(SELECT y.id FROM json_to_recordset(:items::json) AS y(id text)
                WHERE y.id IS NOT NULL)"""

ITEMS_IN = f"""items_in AS (
    -- The items an edit sends, each with its id: the one sent, else the id of the quote's
    -- item at its position unless an item sends that id, else a new one (the one place
    -- this rule is written): :new_item_ids, one per item sent (ids.new_id).
    SELECT x.*, coalesce(x.id, {item_id("p")}, (:new_item_ids::text[])[x.position + 1])
           AS item_id
      FROM {ITEMS_JSON}
      LEFT JOIN quote_items p
        ON x.id IS NULL AND p.quote_id = :quote_id AND p.position = x.position
       AND {item_id("p")} <> ALL({_SENT_IDS})
), unknown AS (
    -- The items sent with an id that is none of the quote's items (nor of :fresh_ids, the
    -- new items a merged save names), their positions in order (NULL: none): the edit is
    -- refused, at each of them.
    SELECT array_agg(x.position ORDER BY x.position) AS position FROM items_in x
     WHERE x.id IS NOT NULL AND x.id <> ALL(:fresh_ids::text[])
       AND NOT EXISTS (SELECT 1 FROM quote_items i
                        WHERE i.quote_id = :quote_id AND {item_id("i")} = x.id)
)"""
"""``items_in``: the edit's items with their ``item_id``; ``unknown``: the ids it may not send."""

_REPLACE_ITEMS = f"""dropped AS (
    DELETE FROM quote_items
     WHERE quote_id = (SELECT id FROM saved)
       AND position >= (SELECT count(*) FROM items_in)
), items AS (
    {_insert_items("items_in x", "x.item_id")}
    ON CONFLICT (quote_id, position) DO UPDATE
       SET item_id = EXCLUDED.item_id, type = EXCLUDED.type,
           description = EXCLUDED.description, quantity = EXCLUDED.quantity,
           unit_price = EXCLUDED.unit_price, line_total = EXCLUDED.line_total,
           details = EXCLUDED.details
)"""
"""The items of ``saved`` become ``items_in``: positions from their count on go, the others
are upserted by position with their item's id (a moved item's id moves with it; the row and
its indexes stay: HOT updates)."""


CREATE = Statement.of(
    f"""
WITH {agents.CALLER}, {CLIENT}, cur AS (SELECT NULL::varchar AS id, NULL::varchar AS agency_id,
    NULL::varchar AS agent_id, NULL::varchar AS client_id, NULL::text AS status,
    NULL::int AS version, NULL::varchar AS last_modified_by, NULL::timestamptz AS last_modified_at
), bound AS (
    -- An active agent (its token valid) below the open-quote bound, creating for a client
    -- it may use, raises its bound by one; the UPDATE re-reads a row changed concurrently,
    -- so check and raise are atomic. No row: nothing below is written.
    UPDATE agents a SET open_quote_bound = a.open_quote_bound + 1
     WHERE a.id = :agent_id AND a.active AND {agents.token_valid("a")}
       AND a.open_quote_bound < :open_limit
       AND EXISTS (SELECT 1 FROM client o WHERE {may_act("a", "o")})
    RETURNING a.agency_id
), saved AS (
    INSERT INTO quotes (id, agency_id, agent_id, client_id, {CONTENT_COLUMNS}, status, version,
                        created_at, last_modified_by, last_modified_at)
    SELECT :quote_id, b.agency_id, :agent_id, :client_id, {CONTENT_VALUES}, :target, 1,
           :now, :actor, :now
      FROM bound b
    RETURNING *
), items AS (
    {_insert_items(ITEMS_JSON, "x.id")}
), {revision(":snapshot::json")}
SELECT EXISTS (SELECT 1 FROM saved) AS written, {FACT_COLUMNS},
       (SELECT open_quote_bound >= :open_limit FROM agents WHERE id = :agent_id) AS at_bound
  FROM {FACTS_FROM}
"""
)
"""Create: agent, client and quota bound checked, quote, items and first revision written."""

_REOPENING = (
    "(NOT cur.status = ANY(:open_statuses::text[]) AND :target = ANY(:open_statuses::text[]))"
)
_MAY_ACT_ON_CUR = f"EXISTS (SELECT 1 FROM caller, cur WHERE {may_act('caller', 'cur')})"

_EDIT_SETS = (
    "client_id = coalesce(:client_id, q.client_id), "
    + ", ".join(f"{c} = :{c}" for c in CONTENT_COLUMNS.split(", "))
    + ", sent_at = NULL, expires_at = NULL, "
)
_SEEN = f"""seen AS (
    -- What the edit may do, decided once on what it read: whether the caller may act on the
    -- quote with the client named (the stored one, or one it may use), whether the save
    -- opens the quote again, and whether it changes anything: the status, the client, a
    -- field or an item.
    SELECT {may_act("caller", "cur")}
           AND (:client_id::varchar IS NULL OR :client_id = cur.client_id
                OR EXISTS (SELECT 1 FROM client WHERE {may_act("caller", "client")}))
           AS allowed,
           {_REOPENING} AS reopening, cur.agent_id, cur.version, cur.status,
           cur.status <> :target
        OR cur.client_id <> coalesce(:client_id, cur.client_id)
        OR (cur.trip_name, cur.destination, cur.start_date, cur.end_date, cur.travelers,
            cur.currency, cur.markup_percent, cur.discount, cur.expires_in_days, cur.notes)
           IS DISTINCT FROM (:trip_name, :destination, :start_date, :end_date, :travelers,
            :currency, :markup_percent, :discount, :expires_in_days, :notes)
        OR EXISTS (
            SELECT 1
              FROM (SELECT * FROM quote_items WHERE quote_id = :quote_id) i
              FULL JOIN items_in x USING (position)
             WHERE ({item_id("i")}, i.type, i.description, i.quantity, i.unit_price)
                   IS DISTINCT FROM (x.item_id, x.type, x.description, x.quantity, x.unit_price)
                OR CASE WHEN i.details::text IS NOT DISTINCT FROM x.details::text THEN false
                        -- stored around the API with \\u0000 (an escape, not a backslash's
                        -- text: an even run of backslashes before it), which jsonb cannot hold
                        WHEN i.details::text ~ '(^|[^\\\\])(\\\\\\\\)*\\\\u0000' THEN true
                        ELSE i.details::jsonb IS DISTINCT FROM x.details::jsonb END
        ) AS changed
      FROM caller, cur
)"""
_EDIT_GUARD = """(SELECT allowed AND changed AND (NOT reopening OR EXISTS (SELECT 1 FROM owner))
          FROM seen) AND (SELECT position IS NULL FROM unknown)"""
EDIT_FROM_ROW = {
    "agentId": "to_json(s.agent_id)",
    "clientId": "to_json(s.client_id)",
    "status": "to_json(s.status)",
    "version": "to_json(s.version)",
    # immutable: the previous version's (one key read, no merge)
    "createdAt": """(SELECT r.snapshot -> 'createdAt' FROM quote_revisions r
                       WHERE r.quote_id = s.id AND r.version = s.version - 1)""",
    # each item's API form from :item_texts (its JSON text without the id), its id spliced in
    "items": """(SELECT ('[' || coalesce(string_agg('{"id":' || to_json(x.item_id)::text || ','
                                           || substr(t.body, 2), ',' ORDER BY t.n), '')
                  || ']')::json
                  FROM unnest(:item_texts::text[]) WITH ORDINALITY AS t(body, n)
                  JOIN items_in x ON x.position = t.n - 1)""",
}
"""The snapshot values of an edit only the row knows (a blind full-form PATCH does not)."""

_EDIT_WRITE = versioned_update(
    _EDIT_SETS,
    _EDIT_GUARD,
    status=status_now("q"),
    snapshot=composed_snapshot(EDIT_FROM_ROW),
    merge=":merge::json",
)

EDIT = Statement.of(
    f"""
WITH {agents.CALLER}, {QUOTE_FACTS}, {CLIENT}, {ONE_TARGET}, {ITEMS_IN}, {_SEEN}, owner AS (
    -- A quote opened again (REJECTED -> DRAFT) counts against its owner's bound.
    UPDATE agents a SET open_quote_bound = a.open_quote_bound + 1
      FROM seen
     WHERE a.id = seen.agent_id AND seen.allowed AND seen.changed AND seen.reopening
       AND seen.version = :expected AND seen.status = ANY(:from_statuses::text[])
       AND a.open_quote_bound < :open_limit AND (a.active OR a.id <> :agent_id)
    RETURNING a.id
), {_EDIT_WRITE}, {_REPLACE_ITEMS}
SELECT EXISTS (SELECT 1 FROM saved) AS written, {FACT_COLUMNS},
       coalesce((SELECT changed FROM seen), false) AS changed,
       coalesce({_REOPENING} AND (SELECT a.open_quote_bound >= :open_limit
                                    FROM agents a WHERE a.id = cur.agent_id), false) AS at_bound,
       saved.agent_id AS saved_agent_id, saved.client_id AS saved_client_id,
       saved.created_at AS saved_created_at, (SELECT position FROM unknown) AS unknown_items,
       (SELECT array_agg(item_id ORDER BY position) FROM items_in) AS item_ids
  FROM {FACTS_FROM} LEFT JOIN saved ON true
"""
)
"""Edit: the content of a visible quote whose status allows it, at the version expected."""


def trip_started(q: str) -> str:
    """Whether the trip of quote alias ``q`` has started: its start date is ``:today`` (the
    agency's local date at the send) or earlier. Such a quote is not sent (the one place
    this rule is written; ``refusals`` reads the statement's ``trip_started`` fact)."""
    return f"({q}.start_date <= :today::date)"


def offer_days(q: str) -> str:
    """The days after ``:today`` a sent offer of quote alias ``q`` stays valid: its
    ``expiresInDays``, but never past the day before its trip starts, so that its
    ``expiresAt`` (the end of that day) is the earlier of the offer's end and the trip's start
    (the one place this rule is written; 0 on a trip starting tomorrow)."""
    return f"least({q}.expires_in_days, {q}.start_date - :today::date - 1)"


def _send_expiry(q: str) -> str:
    return f":expiries::json -> ({offer_days(q)})::text"


_TRANSITION_WRITE = versioned_update(
    "sent_at = coalesce(:sent_at, q.sent_at), "
    f"expires_at = coalesce(({_send_expiry('q')} #>> '{{}}')::timestamptz, q.expires_at), ",
    f"""{_MAY_ACT_ON_CUR}
       AND (SELECT count(*) FROM quote_items i WHERE i.quote_id = q.id) >= :items_needed
       AND (:today::date IS NULL OR NOT {trip_started("q")})
       AND (:expiries::json IS NULL OR ({_send_expiry("q")}) IS NOT NULL)
       AND (:timezone::text IS NULL OR EXISTS (SELECT 1 FROM caller WHERE timezone = :timezone))""",
    status=status_now("q"),
    snapshot=merged_snapshot(_send_expiry("s")),
)

_LINKS = """ended AS (
    -- A re-send or a cancel ends the quote's open links (lifecycle.LINK_ENDED_BY).
    UPDATE proposals p SET ended_at = :now, ended_reason = :end_reason::text
      FROM saved s
     WHERE p.quote_id = s.id AND p.ended_at IS NULL AND :end_reason::text IS NOT NULL
), proposal AS (
    -- A send freezes what it sent behind a new link (its token's hash, never the token): the
    -- revision's snapshot with the agency's name and time zone, and the SHA-256 of that JSON
    -- text (``json`` keeps it byte for byte: the page shows and hashes exactly these bytes).
    INSERT INTO proposals (id, quote_id, version, token_hash, link_nonce, proposal,
                           proposal_hash, created_at, expires_at)
    SELECT :proposal_id::text, s.id, s.version, :link_hash::text, :link_nonce::text, d.doc,
           encode(sha256(convert_to(d.doc::text, 'UTF8')), 'hex'), :now, s.expires_at
      FROM saved s JOIN agencies g ON g.id = s.agency_id CROSS JOIN revision r
     CROSS JOIN LATERAL (
           SELECT json_build_object('agency', json_build_object('name', g.name,
                                                                'timeZone', g.timezone),
                                    'quote', r.snapshot) AS doc) d
     WHERE :link_hash::text IS NOT NULL
)"""
"""What a transition does to the quote's proposal links (issue 16), in the same statement."""

TRANSITION = Statement.of(
    f"""
WITH {agents.CALLER}, {QUOTE_FACTS}, {CLIENT}, {ONE_TARGET}, {_TRANSITION_WRITE}, {_LINKS}
SELECT EXISTS (SELECT 1 FROM saved) AS written, {FACT_COLUMNS},
       (SELECT count(*) FROM quote_items i WHERE i.quote_id = cur.id) AS item_count,
       coalesce({trip_started("cur")}, false) AS trip_started, cur.start_date AS fact_start,
       (SELECT snapshot::text FROM revision) AS snapshot
  FROM {FACTS_FROM}
"""
)
"""Send, accept, reject, delete: the status of a visible quote, at the version expected; a
send (``:today`` set) also needs ``:items_needed`` items and a trip that has not started,
and sets ``expires_at`` from ``:expiries`` (the expiry instant, ISO 8601, by the days the
offer is valid, ``offer_days``, for the caller's agency ``:timezone``); it stores the proposal
behind the link ``:link_hash``. ``:end_reason`` (a re-send, a cancel) ends the open links."""

EXPIRE = Statement.of(
    f"""
WITH target AS (
    -- In the order of ix_quotes_status_expires_at, longest overdue first: even a generic
    -- plan reads the due rows of that index only, never every quote (a scan stopped by
    -- LIMIT) nor every SENT quote (to sort them).
    SELECT q.id, q.version FROM quotes q
     WHERE q.status = ANY(:from_statuses::text[]) AND {past_expiry("q")}
       AND {status_now("q")} = :target
     ORDER BY q.status, q.expires_at
     LIMIT :batch_size
       FOR UPDATE SKIP LOCKED
), {versioned_update("", "true", status="q.status", snapshot=merged_snapshot())}
SELECT (SELECT count(*) FROM target) AS seen, (SELECT count(*) FROM revision) AS written
"""
)
"""The sweep: SENT quotes past expiry written EXPIRED; sweepers take disjoint batches."""

LOAD = Statement.of(
    f"""
WITH {agents.CALLER}, {QUOTE_FACTS}, {CLIENT}
SELECT {FACT_COLUMNS}, q.*, {ITEMS_OF} AS items
  FROM {FACTS_FROM}
  LEFT JOIN quotes q ON q.id = cur.id AND (:version::int IS NULL OR q.version = :version)
"""
)
"""A quote with its items and the facts about its caller (and a client, if one is named);
with ``:version``, the quote only at that version: at another, only the facts (a stale
edit's refusal needs no more)."""

ROLES = ("agent", "admin")
"""The agents' roles (the ``role`` check of ``agents``)."""


def _listed(role: str) -> Statement:
    return Statement.of(
        f"""
SELECT q.*, {status_now("q")} AS fact_status, {ITEMS_OF} AS items
  FROM quotes q
 WHERE {may_act_of("q", agency=":agency_id", agent=":agent_id", role=f"'{role}'")}
   AND (:status::text IS NULL OR {status_now("q")} = :status)
   AND (:client_id::varchar IS NULL OR q.client_id = :client_id)
   AND (:updated_since::timestamptz IS NULL OR {changed_since("q")})
   AND (q.created_at, q.id) < (coalesce(:before_at::timestamptz, 'infinity'),
                               coalesce(:before_id::varchar, ''))
 ORDER BY q.created_at DESC, q.id DESC
 LIMIT :limit
"""
    )


LIST = {role: _listed(role) for role in ROLES}
"""The quotes a caller of each role may see (an agent: its own; an admin: its agency's),
newest first, ``:limit`` before the keyset ``(:before_at, :before_id)`` (immutable keys:
stable pages; no cursor: before ``infinity``). The role is a literal of each statement, so
that even a generic plan has folded the rule to one index's equality: an agent's by
``ix_quotes_agent_id_created_at_id``, an admin's by ``ix_quotes_agency_id_created_at_id``,
read from the cursor on in index order whatever the depth (with ``KEYSET_PLANS``)."""

KEYSET_PLANS = Statement.of(
    """
SELECT set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)
"""
)
"""For the rest of the transaction, plan a page as a walk of its index in order, never as a
bitmap of the caller's whole range sorted afterwards. A generic plan (what a prepared
statement switches to) knows neither the caller nor which optional filters are set; it
reckons an average caller's few hundred quotes, each filter as selective, and so a page as
reading most of them, where a bitmap then a sort looks cheaper: measured on a loaded database
(``make bench BENCH_ARGS="--scenarios growth"``), 10-30 ms a page for an agent or an admin
with thousands of quotes, against 0.2-2 ms in index order."""

CALLER_FACTS = Statement.of(agents.CALLER_FACTS)

REVISION_PAGE = Statement.of(
    """
SELECT version, operation, status, actor_id, correlation_id, created_at, merge::text
  FROM quote_revisions
 WHERE quote_id = :quote_id AND version > :after
 ORDER BY version
 LIMIT :limit
"""
)
"""A page of a quote's history without the snapshots: ``:limit`` versions after ``:after``."""

REVISION = Statement.of(
    """
SELECT version, operation, status, actor_id, correlation_id, created_at, merge::text,
       snapshot::text
  FROM quote_revisions
 WHERE quote_id = :quote_id AND version = :version
"""
)
"""One version of a quote's history, with its snapshot."""

SNAPSHOTS = Statement.of(
    """
SELECT version, snapshot::text FROM quote_revisions
 WHERE quote_id = :quote_id AND version = ANY(:versions::int[])
"""
)

OUTCOME = Statement.of(
    """
SELECT count(*) AS written, min(snapshot::text) AS snapshot, min(quote_id) AS quote_id
  FROM quote_revisions WHERE save_id = :save_id
"""
)
"""What the save ``:save_id`` wrote, if it committed: its revisions (one, but the sweep's
batch), a snapshot and a quote's id."""

LOCK_QUOTE = Statement.of("SELECT version FROM quotes WHERE id = :quote_id FOR UPDATE")
"""A merged save's first statement: the quote's row locked until its write, so the version
it merges onto (read next, ``LOAD``) is the one its guarded write finds."""

LOCK_AGENT = Statement.of("SELECT active FROM agents WHERE id = :agent_id FOR UPDATE")

RECOUNT = Statement.of(
    f"""
UPDATE agents a SET open_quote_bound = (
    SELECT count(*) FROM quotes q
     WHERE q.agent_id = a.id AND {status_now("q")} = ANY(:open_statuses::text[]))
 WHERE a.id = :agent_id
RETURNING open_quote_bound
"""
)
"""The exact open-quote count becomes the bound (after ``LOCK_AGENT``, in its transaction)."""

SAVES = (CREATE, EDIT, TRANSITION)
"""The statements prepared on every pooled connection at start-up."""
