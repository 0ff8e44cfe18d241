"""The OpenAPI schema is complete, and fuzzing the API from it finds no 5xx and loses no data.

The fuzz test drives a real uvicorn server on loopback with schemathesis: valid requests
(generated from the schema) and invalid ones (schemathesis' negative mode), on SQLite and
PostgreSQL. SHOPREC_FUZZ_EXAMPLES sets the examples per operation and mode (default 12).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from serve_helpers import ADMIN, ADMIN_KEY, LiveServer, catalogue_rows, event

from shoprec.serve.app import create_app
from shoprec.serve.settings import ServeSettings

EXAMPLES = int(os.environ.get("SHOPREC_FUZZ_EXAMPLES", "12"))


def test_every_operation_is_documented_with_schemas_security_and_errors(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "An API key (`sr_<id>_<secret>`); `Authorization: Bearer <key>` works too."}
    operations = [(path, method, op) for path, ops in schema["paths"].items() for method, op in ops.items()]
    assert len(operations) == 31
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert path.startswith("/v1/"), where
        assert op.get("summary") and op.get("tags"), where
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, where
        if ok != ["204"]:
            assert op["responses"][ok[0]]["content"], where
        if path != "/v1/health":
            assert op.get("security") == [{"APIKeyHeader": []}], where
            assert {"401", "403", "429"} <= set(op["responses"]), where
        if op.get("requestBody") or op.get("parameters"):
            assert "422" in op["responses"], where
    body = schema["components"]["schemas"]["RecommendationRequest"]
    assert body["additionalProperties"] is False
    # The limit this service enforces (max_k), not the widest one the code allows.
    assert body["properties"]["k"] == {"type": "integer", "maximum": 100, "minimum": 1, "title": "K",
                                       "default": 10}


def test_the_web_page_and_config_are_not_part_of_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/", "/dashboard", "/ui/config", "/ui/session"} & set(paths)


@pytest.fixture
def fuzz_server(database_url, pseudonymizer, knn, tiny_shop, tmp_path):
    app = create_app(
        ServeSettings(database_url=database_url, admin_key=ADMIN_KEY, rate_limit_per_s=0,
                      model_dir=str(tmp_path), max_batch=50),
        pseudonymizer=pseudonymizer, model=knn,
    )
    server = LiveServer(app)
    import httpx

    httpx.post(f"{server.url}/v1/items/batch", json={"items": catalogue_rows(tiny_shop)}, headers=ADMIN)
    yield server
    server.stop()


def test_fuzzing_from_the_schema_finds_no_server_error(fuzz_server):
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        negative_data_rejection,
        not_a_server_error,
        positive_data_acceptance,
        response_schema_conformance,
        status_code_conformance,
    )

    def rejects_invalid_data(ctx, response, case):
        # 413 (body over the size limit) is a rejection too; schemathesis does not list it.
        if response.status_code != 413:
            return negative_data_rejection(ctx, response, case)
        return None

    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    def fuzz(operation, mode):
        # Valid-by-schema requests must be accepted (no "rejected though valid"), invalid ones refused.
        extra = [rejects_invalid_data] if mode is GenerationMode.NEGATIVE else [positive_data_acceptance]

        # The key is fixed, so negative cases break the body, query or path, never the auth.
        @given(case=operation.as_strategy(generation_mode=mode, headers=dict(ADMIN)))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case):
            nonlocal cases
            cases += 1
            response = case.call(base_url=fuzz_server.url, timeout=30)
            case.validate_response(response, checks=checks + extra)

        run()

    ran = cases = 0
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(result.ok(), mode)
            except Unsatisfiable:
                # Operations without inputs (GET /v1/model, say) have no invalid request to make.
                assert mode is GenerationMode.NEGATIVE
                continue
            ran += 1
    assert ran >= 30
    # Every case passed every check: no 5xx, no valid-by-schema request rejected, no invalid one accepted.
    print(f"\nfuzzing: {cases} cases over {ran} operation-modes, 0 failures")


def test_no_data_loss_under_mixed_valid_duplicate_invalid_and_conflicting_batches(client):
    """Whatever mix of good, repeated, bad and conflicting batches arrives, every accepted event
    is stored exactly once, and nothing from a rejected batch is."""
    def good_event(n):  # an id always carries the same payload: a repeat is a retry
        return event(f"ev{n}", f"s{n % 4}", f"i{1 + n % 8}")

    good = st.builds(good_event, st.integers(0, 60))
    bad = st.builds(lambda n: event(f"bad{n}", "s0", "i1", kind="teleport"), st.integers(0, 9))
    # An id with another item than it is stored (or sent earlier in the batch) with: a 409.
    clash = st.builds(lambda n: event(f"ev{n}", f"s{n % 4}", f"i{1 + (n + 1) % 8}"), st.integers(0, 60))
    batches = st.lists(st.tuples(st.lists(good, min_size=1, max_size=6), st.none() | bad | clash),
                       min_size=1, max_size=8)
    accepted: dict[str, str] = {}  # event id -> the item it was stored with

    @given(batches=batches)
    @settings(max_examples=max(5, EXAMPLES // 2), deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(batches):
        for events, poison in batches:
            body = {"events": events + ([poison] if poison else [])}
            r = client.post("/v1/events/batch", json=body, headers=ADMIN)
            if poison and poison["event"] == "teleport":
                assert r.status_code == 422
                continue
            sent: dict[str, str] = {}
            clash = False
            for e in body["events"]:
                known = accepted.get(e["event_id"], sent.get(e["event_id"]))
                clash |= known is not None and known != e["item_id"]
                sent.setdefault(e["event_id"], e["item_id"])
            if clash:
                assert r.status_code == 409, r.text
                assert set(r.json()["error"]["details"][0]["differs"]) == {"item_id"}
                continue
            new = set(sent) - set(accepted)
            assert r.status_code == 200, r.text
            assert (r.json()["accepted"], r.json()["duplicates"]) == (len(new), len(body["events"]) - len(new))
            accepted.update({i: sent[i] for i in new})
        stored = set()
        for s in range(4):
            exported = client.post("/v1/shoppers/export", json={"shopper_id": f"s{s}"}, headers=ADMIN).json()
            stored.update(e["event_id"] for e in exported["events"])
        assert stored == set(accepted)

    run()
