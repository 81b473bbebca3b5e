"""The OpenAPI document says, per route, what the route really answers: its success and the
error statuses it can send (the envelope, the codes named), the headers that come with each,
and its request body's model (from its body dependency). No route documents a status it
cannot send."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import make_settings
from tripquote import etags
from tripquote.app import create_app
from tripquote.errors import QuoteValidationFailed

Q = "/api/agents/quotes"
C = "/api/agents/clients"
ID = Q + "/{quote_id}"
W = "/api/agents/webhooks"
WID = W + "/{webhook_id}"

_DB = {"500", "503"}  # a bug; the database refused, lost or timed out
_WRITE = {"400", "401", "403", "404", "409", "413", "415", "429"} | _DB

STATUSES: dict[tuple[str, str], set[str]] = {
    ("post", Q): {"201", "422"} | _WRITE,
    ("get", Q): {"200", "400", "401", "404"} | _DB,
    ("get", ID): {"200", "304", "400", "401", "403", "404", "412"} | _DB,
    ("patch", ID): {"200", "412", "422"} | _WRITE,
    ("delete", ID): {"200", "412", "422"} | _WRITE,
    ("post", ID + "/send"): {"200", "412", "422"} | _WRITE,
    ("post", ID + "/accept"): {"200", "412", "422"} | _WRITE,
    ("post", ID + "/reject"): {"200", "412", "422"} | _WRITE,
    ("get", ID + "/revisions"): {"200", "400", "401", "403", "404"} | _DB,
    ("get", ID + "/proposal"): {"200", "401", "403", "404", "412"} | _DB,
    ("get", ID + "/proposal.pdf"): {"200", "401", "403", "404", "412"} | _DB,
    ("post", ID + "/proposal/revoke"): {"200", "401", "403", "404", "409", "412", "429"} | _DB,
    ("get", ID + "/revisions/{version}"): {"200", "400", "401", "403", "404"} | _DB,
    ("post", C): {"201", "400", "401", "404", "409", "413", "415", "422", "429"} | _DB,
    ("get", C): {"200", "400", "401", "404"} | _DB,
    ("get", C + "/{client_id}"): {"200", "401", "403", "404"} | _DB,
    ("post", W): {"201", "400", "401", "403", "404", "409", "413", "415", "422", "429"} | _DB,
    ("get", W): {"200", "401", "403", "404"} | _DB,
    ("get", WID): {"200", "401", "403", "404"} | _DB,
    ("patch", WID): {"200", "400", "401", "403", "404", "413", "415", "422", "429"} | _DB,
    ("delete", WID): {"200", "401", "403", "404", "429"} | _DB,
    ("post", WID + "/rotate-secret"): {"200", "400", "401", "403", "404", "413", "415", "429"}
    | _DB,
    ("get", WID + "/deliveries"): {"200", "400", "401", "403", "404"} | _DB,
    ("post", WID + "/replay"): {"200", "400", "401", "403", "404", "413", "415", "429"} | _DB,
    ("get", "/api/ops/summary"): {"200", "401", "403", "404"} | _DB,
    ("get", "/health/live"): {"200"},
    ("get", "/health/ready"): {"200", "503"},
}
"""Every documented operation and exactly the statuses it can answer (docs/errors.md)."""

SUCCESS_HEADERS: dict[tuple[str, str], set[str]] = {
    ("post", Q): {"ETag", "Location", "Idempotent-Replayed"},
    ("get", ID): {"ETag"},
    ("patch", ID): {"ETag", "Preference-Applied", "Idempotent-Replayed"},
    ("delete", ID): {"ETag", "Idempotent-Replayed"},
    ("post", ID + "/send"): {"ETag", "Idempotent-Replayed"},
    ("post", ID + "/accept"): {"ETag", "Idempotent-Replayed"},
    ("post", ID + "/reject"): {"ETag", "Idempotent-Replayed"},
    ("post", C): {"Location", "Idempotent-Replayed"},
    ("post", W): {"Location", "Idempotent-Replayed"},
    ("get", ID + "/proposal.pdf"): {"Content-Disposition"},
}
"""Headers a success carries besides X-Correlation-ID (every response has it)."""

REQUEST_BODIES = {
    ("post", Q): ("QuoteIn", True),
    ("patch", ID): ("QuotePatch", True),
    ("post", C): ("ClientIn", True),
    ("post", W): ("SubscriptionIn", True),
    ("patch", WID): ("SubscriptionPatch", True),
    ("post", WID + "/rotate-secret"): ("RotationIn", True),
    ("post", WID + "/replay"): ("ReplayIn", True),
}
"""The documented bodies. A transition's optional ``{"version": n}`` and a PATCH body's
``version`` are not documented: If-Match is the document's one way to name the version (both
given must agree, a rule across two parts of a request that OpenAPI cannot state)."""

ACTS_ON_VERSION = {
    ("patch", ID),
    ("delete", ID),
    ("post", ID + "/send"),
    ("post", ID + "/accept"),
    ("post", ID + "/reject"),
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # The document is built without starting the app: no connection is made.
    return create_app(
        make_settings("postgresql+asyncpg://postgres@127.0.0.1:5432/unused")
    ).openapi()


def _operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


def test_each_route_documents_exactly_the_statuses_it_can_answer(
    document: dict[str, Any],
) -> None:
    documented = {
        (method, path): set(operation["responses"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    assert documented == STATUSES


def test_every_error_status_is_the_envelope_naming_its_codes(document: dict[str, Any]) -> None:
    envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for (method, path), statuses in STATUSES.items():
        responses = _operation(document, method, path)["responses"]
        for status in statuses - {"200", "201", "304"}:
            response = responses[status]
            assert response["content"]["application/json"]["schema"] == envelope, (path, status)
            assert "`" in response["description"], (path, status)  # names its codes
            assert response["headers"]["X-Correlation-ID"]["required"] is True


def test_the_codes_are_named_under_their_status(document: dict[str, Any]) -> None:
    patch = _operation(document, "patch", ID)["responses"]
    assert "QUOTE_CONFLICT_VERSION" in patch["412"]["description"]
    for code in ("QUOTE_CONFLICT_VERSION", "QUOTE_STATE_INVALID", "QUOTE_ALREADY_SENT"):
        assert code in patch["409"]["description"]
    for method, path in (("post", Q), ("post", C), ("patch", ID)):
        create = _operation(document, method, path)["responses"]
        assert "IDEMPOTENCY_KEY_REUSED" in create["422"]["description"]
        assert "IDEMPOTENCY_KEY_IN_USE" in create["409"]["description"]
        # IN_USE alone on a create; beside a version conflict, which has none, on a PATCH
        assert create["409"]["headers"]["Retry-After"]["required"] is (method == "post")
    send = _operation(document, "post", ID + "/send")["responses"]
    assert "TRIP_ALREADY_STARTED" in send["422"]["description"]
    for transition in ("accept", "reject"):
        other = _operation(document, "post", f"{ID}/{transition}")["responses"]
        assert "TRIP_ALREADY_STARTED" not in other["422"]["description"]
    # A save's COMMIT may go unanswered (docs/errors.md): every save says so, no read does.
    saves = (("post", Q), ("patch", ID), ("delete", ID), ("post", ID + "/send"), ("post", C))
    for method, path in saves:
        assert (
            "SAVE_OUTCOME_UNKNOWN"
            in _operation(document, method, path)["responses"]["503"]["description"]
        ), (method, path)
    assert "SAVE_OUTCOME_UNKNOWN" not in str(_operation(document, "get", ID)["responses"])
    read = _operation(document, "get", ID)["responses"]
    assert {"QUOTE_NOT_FOUND", "AGENT_NOT_FOUND"} <= set(
        read["404"]["description"].replace("`", " ").replace(",", " ").split()
    )


def test_success_headers_are_documented_where_they_are_sent(document: dict[str, Any]) -> None:
    for (method, path), statuses in STATUSES.items():
        success = next(s for s in ("200", "201") if s in statuses)
        headers = set(_operation(document, method, path)["responses"][success]["headers"])
        assert headers == SUCCESS_HEADERS.get((method, path), set()) | {"X-Correlation-ID"}, (
            method,
            path,
        )
    etag = _operation(document, "get", ID)["responses"]["200"]["headers"]["ETag"]
    assert etag["required"] is True


def test_error_headers_are_documented_where_they_are_sent(document: dict[str, Any]) -> None:
    create = _operation(document, "post", Q)["responses"]
    assert create["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert create["503"]["headers"]["Retry-After"]["required"] is True
    assert create["429"]["headers"]["Retry-After"]["required"] is True
    assert {"RateLimit-Policy", "RateLimit"} <= set(create["429"]["headers"])
    assert create["409"]["headers"]["Retry-After"]["required"] is True  # only IN_USE: 409
    send = _operation(document, "post", ID + "/send")["responses"]
    assert send["409"]["headers"]["Retry-After"]["required"] is False  # a conflict has none
    assert "Retry-After" not in create["400"]["headers"]
    read = _operation(document, "get", ID)["responses"]
    assert "RateLimit" not in str(read)  # a read is never rate-limited
    patch = _operation(document, "patch", ID)["responses"]
    assert patch["409"]["headers"]["Retry-After"]["required"] is False  # a conflict has none
    # A body with a content coding: 415 with Accept-Encoding: identity (docs/errors.md).
    for method, path in STATUSES:
        refused = _operation(document, method, path)["responses"].get("415")
        if refused is not None:
            assert refused["headers"]["Accept-Encoding"]["schema"]["enum"] == ["identity"]


def test_request_bodies_come_from_the_body_dependencies(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for (method, path), (model, required) in REQUEST_BODIES.items():
        body = _operation(document, method, path)["requestBody"]
        assert body["required"] is required
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{model}"
        assert schemas[model]["additionalProperties"] is False
    assert "QuoteIn" in schemas and "FlightItemIn" in schemas  # the models items refer to
    assert "required" not in schemas["QuotePatch"]
    assert "version" not in schemas["QuotePatch"]["properties"]
    assert schemas["QuoteIn"]["properties"]["items"]  # as rich as the validation model
    for method, path in STATUSES:
        if "requestBody" in _operation(document, method, path):
            assert (method, path) in REQUEST_BODIES


def test_headers_read_by_dependencies_are_documented(document: dict[str, Any]) -> None:
    for method, path in ACTS_ON_VERSION:
        parameters = {p["name"]: p for p in _operation(document, method, path)["parameters"]}
        # One strong entity tag (RFC 9110 §8.8.3): the one way to name the version acted on.
        assert parameters["If-Match"]["schema"]["pattern"] == etags.STRONG_TAG_PATTERN
        assert parameters["If-Match"]["required"] is True, (method, path)
        assert parameters["If-None-Match"]["schema"]["pattern"] == etags.PATTERN
        assert parameters["If-None-Match"]["required"] is False, (method, path)
    # every POST that creates something, every change of a quote takes a key
    for method, path in (("post", Q), ("post", C), *ACTS_ON_VERSION):
        create = {p["name"]: p for p in _operation(document, method, path)["parameters"]}
        assert create["Idempotency-Key"]["schema"]["maxLength"] == 255, (method, path)
    read = {p["name"]: p for p in _operation(document, "get", ID)["parameters"]}
    assert read["If-None-Match"]["schema"]["pattern"] == etags.PATTERN
    assert read["If-None-Match"]["required"] is False
    assert (read["If-Match"]["schema"]["pattern"], read["If-Match"]["required"]) == (
        etags.PATTERN,
        False,
    )


@pytest.mark.parametrize(
    ("value", "documented"),
    [
        *[('"5"', True), ('W/"5"', True), ("*", True), ('"a,b", "5"', True), ('"0"', True)],
        *[("5", False), ("abc", False), ('"5', False), ('"5" "6"', False), ("", False)],
    ],
)
def test_the_etag_pattern_is_the_grammar_the_headers_are_parsed_with(
    value: str, documented: bool
) -> None:
    """What the document's pattern allows is exactly what the parser accepts."""
    assert (re.match(etags.PATTERN, value) is not None) is documented
    try:
        etags.parse(value, "If-Match")
    except QuoteValidationFailed:
        accepted = False
    else:
        accepted = True
    assert accepted is documented


def test_a_not_modified_answer_is_documented_where_it_is_sent(document: dict[str, Any]) -> None:
    for (method, path), statuses in STATUSES.items():
        if "304" not in statuses:
            continue
        not_modified = _operation(document, method, path)["responses"]["304"]
        assert "content" not in not_modified
        assert set(not_modified["headers"]) == {"ETag", "X-Correlation-ID"}


def test_no_framework_422_and_bearer_on_every_api_operation(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") is not None) is path.startswith("/api/")


def test_responses_naming_a_quote_link_to_what_can_be_done_with_it(
    document: dict[str, Any],
) -> None:
    # OpenAPI links: a client (or a stateful fuzzer) goes from a create, read, update or
    # transition to the quote's read, history and revision, and to each edit of that version.
    ids = {
        (method, path): operation["operationId"]
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    sources = [("post", Q, "201"), ("get", ID, "200")] + [(m, p, "200") for m, p in ACTS_ON_VERSION]
    for method, path, status in sources:
        links = _operation(document, method, path)["responses"][status]["links"]
        targets = {link["operationId"]: link["parameters"] for link in links.values()}
        for target in ACTS_ON_VERSION:
            assert targets[ids[target]] == {
                "quote_id": "$response.body#/quoteId",
                "If-Match": "$response.header.ETag",
            }
        assert targets[ids[("get", ID)]] == {"quote_id": "$response.body#/quoteId"}
        assert targets[ids[("get", ID + "/revisions/{version}")]] == {
            "quote_id": "$response.body#/quoteId",
            "version": "$response.body#/version",
        }
    assert "links" not in _operation(document, "get", Q)["responses"]["200"]


def test_the_currencies_are_the_configured_whitelist(document: dict[str, Any]) -> None:
    currency = document["components"]["schemas"]["QuoteIn"]["properties"]["currency"]
    assert currency["enum"] == sorted(make_settings("postgresql+asyncpg://x@h/d").currencies)


def test_every_query_parameter_may_be_empty(document: dict[str, Any]) -> None:
    """``?x=`` is answered as no ``x`` (tests/api/test_empty_query.py), and says so."""
    query = [
        parameter
        for operations in document["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "query"
    ]
    assert len(query) >= 7
    assert all(parameter["allowEmptyValue"] is True for parameter in query)
