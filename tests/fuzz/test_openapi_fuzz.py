"""Bad input at scale: schemathesis generates requests for every operation of the OpenAPI
document a real ``tripquote serve`` process serves at ``/openapi.json``, valid and invalid,
with a valid bearer token (and, in valid cases, the agent's real client and quote ids so some
saves pass).

Every answer: no 5xx; every status >= 400 is the error envelope; documented statuses, content
types, headers and response schemas are respected; data the schema calls invalid is refused.
Bounded (``MAX_EXAMPLES`` per operation and mode, no shrinking) and deterministic (Hypothesis
derandomized). The document itself must be usable: every ``$ref`` resolves, the statuses the
service really sends are documented, every success has a schema.

(``schemathesis.pytest.from_fixture`` cannot be used with pytest 9: schemathesis 4.32 sets
``request.node._nodeid``, which pytest 9 no longer has; the operations are driven here with
``operation.as_strategy`` instead.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import CHECKS
from schemathesis.generation.modes import GenerationMode

from tests.api.test_errors_api import ENVELOPE_KEYS
from tests.fuzz.conftest import Target

pytestmark = pytest.mark.postgres

MAX_EXAMPLES = 25
# A schema cannot say "startDate before endDate" or "this client is yours": valid-looking data
# may be refused with a 4xx on purpose, so "valid data is accepted" is not a property here.
# "ignored_auth" re-sends a case with forged credentials, but every case here carries the
# agent's real token as a fixed header, which the re-sent request keeps: it would flag our own
# set-up. Missing, malformed, expired and forged tokens are tested in tests/api/test_errors_api.
EXCLUDED_CHECKS = frozenset({"positive_data_acceptance", "ignored_auth"})
PUBLIC_PATHS = frozenset({"/health/live", "/health/ready"})


def _use_real_ids(case: Any, target: Target) -> None:
    """In valid cases, point at the agent's own client and quote so the save paths run."""
    if not case.meta.generation.mode.is_positive:
        return
    if isinstance(case.body, dict) and isinstance(case.body.get("clientId"), str):
        case.body["clientId"] = target.actor.client_id
    for name in ("quote_id", "client_id"):
        if case.path_parameters and name in case.path_parameters:
            value = str(case.path_parameters[name])
            if sum(value.encode()) % 2 == 0:  # half of them, deterministically
                real = target.quote_id if name == "quote_id" else target.actor.client_id
                case.path_parameters[name] = real


def _fuzz(
    operation: Any, mode: GenerationMode, target: Target, session: Any, seen: Counter[int]
) -> str | None:
    """Run ``MAX_EXAMPLES`` generated cases of one operation; the first failure, if any."""
    excluded = [check for check in CHECKS.get_all() if check.__name__ in EXCLUDED_CHECKS]

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,  # the same cases on every run
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
        suppress_health_check=list(HealthCheck),
    )
    # The token is fixed, not generated: every case is made by a real agent.
    @given(case=operation.as_strategy(generation_mode=mode, headers=target.actor.headers))
    def run(case: Any) -> None:
        _use_real_ids(case, target)
        response = case.call(session=session, timeout=20)
        seen[response.status_code] += 1
        sent = "" if type(case.body).__name__ == "NotSet" else f" {case.body!r:.300}"
        where = f"{case.method} {case.formatted_path}{sent} -> {response.status_code}"
        assert response.status_code < 500, f"{where}: {response.text}"
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == ENVELOPE_KEYS, f"{where}: not the envelope: {body}"
            assert body["success"] is False, where
            assert [body["correlationId"]] == response.headers["x-correlation-id"], where
        case.validate_response(response, excluded_checks=excluded)

    try:
        run()
    except Unsatisfiable:
        documented_body = "requestBody" in operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not documented_body:
            return None  # only free-form strings to send: nothing can be made invalid
        return (
            f"{operation.label} ({mode.value}): no case could be generated from its request "
            "schema (see test_openapi_document_is_complete)"
        )
    except (Exception, BaseExceptionGroup) as exc:
        return f"{operation.label} ({mode.value}): {type(exc).__name__}: {exc}"
    return None


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_every_operation_answers_with_its_contract(target: Target, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{target.server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures, statuses = [], {}
    with requests.Session() as session:
        for operation in operations:
            statuses[operation.label] = Counter[int]()
            failure = _fuzz(operation, mode, target, session, statuses[operation.label])
            if failure is not None:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)
    if mode is GenerationMode.POSITIVE:  # the save path itself was reached, not only refusals
        assert statuses["POST /api/agents/quotes"][201] >= 1, statuses


# --- the document itself -------------------------------------------------------------------


def _refs(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield where, node["$ref"]
        for key, value in node.items():
            yield from _refs(value, where)
            del key
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value, where)


def _resolves(document: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _gaps(document: dict[str, Any]) -> list[str]:
    """What a client generator or a fuzzer cannot rely on, one line each."""
    gaps = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            gaps += [
                f"{label}: $ref {ref} does not resolve"
                for _, ref in _refs(operation, label)
                if not _resolves(document, ref)
            ]
            responses = operation.get("responses", {})
            for status, response in responses.items():
                # JSON, or the one other type a route sends (the proposal's application/pdf)
                content = response.get("content", {})
                schema = (
                    content.get("application/json") or content.get("application/pdf") or {}
                ).get("schema")
                if status.startswith("2") and not schema:
                    gaps.append(f"{label}: {status} response has no schema")
            needed = {"503"} if path == "/health/ready" else set()
            if path not in PUBLIC_PATHS:
                needed |= {"401", "404"}  # a missing/invalid token; an agent that is gone
            if path == "/api/ops/summary":
                needed |= {"403"}  # an agent that is not an admin
            gaps += [
                f"{label}: status {s} is sent but not documented"
                for s in sorted(needed - set(responses))
            ]
    schemes = document.get("components", {}).get("securitySchemes", {})
    if not any(s.get("type") == "http" and s.get("scheme") == "bearer" for s in schemes.values()):
        gaps.append("components.securitySchemes: no HTTP bearer scheme declared")
    return gaps


def test_openapi_document_is_complete(target: Target) -> None:
    response = requests.get(f"{target.server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    gaps = _gaps(response.json())
    assert not gaps, "the served OpenAPI document:\n" + "\n".join(gaps)
