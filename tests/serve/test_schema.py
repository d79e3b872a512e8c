"""The whole OpenAPI schema fuzzed with schemathesis: no 5xx, every response matches its schema, and /audio never
serves a byte that is not one of the catalogue's own audio files."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tunespace.serve.app import create_app
from tunespace.serve.explorer import Explorer


@pytest.fixture(scope="module")
def explorer(served):
    return Explorer(served.data, served.htcl_index, run=served.run, model=served.model)


@pytest.fixture(scope="module")
def audio_files(explorer):
    """Every file the catalogue may serve, by content (each is small in the tiny corpus)."""
    return {explorer.catalogue.audio_file(t).read_bytes() for t in explorer.catalogue.ids}


@pytest.fixture(scope="module")
def api_schema(explorer):
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(explorer))


OPERATIONS = ["/health", "/search", "/tracks/{track_id}/similar", "/tracks/{track_id}",
              "/users/{user_id}/recommendations", "/audio/{track_id}", "/map"]

# operations with constrained parameters (k, history, lang, colour); any string is a valid id, so the others have
# no schema-breaking request to make
CONSTRAINED = {"/search", "/tracks/{track_id}/similar", "/users/{user_id}/recommendations", "/map"}


# One test per operation and mode (schema-valid and schema-breaking requests), drawing cases from schemathesis's
# strategies through hypothesis (its pytest plugin's fixture loader predates pytest 9).
@pytest.mark.parametrize(("path", "mode"), [
    (path, mode) for path in OPERATIONS for mode in GenerationMode
    if path in CONSTRAINED or mode is GenerationMode.POSITIVE
], ids=lambda value: value.value if isinstance(value, GenerationMode) else value)
def test_every_operation_answers_within_its_schema(api_schema, audio_files, path, mode):
    operation = api_schema[path]["GET"]
    # /search takes exactly one of q and like, a rule OpenAPI cannot state: a schema-valid request with neither or
    # both gets a 400 that says so, which schemathesis's positive-data check would count as a rejection
    excluded = [schemathesis.checks.positive_data_acceptance] if path == "/search" else []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def fuzz(data):
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call_and_validate(excluded_checks=excluded)
        assert response.status_code < 500
        if path.startswith("/audio") and response.status_code in (200, 206):
            assert any(response.content in whole for whole in audio_files), "served a file outside the catalogue"

    fuzz()


def test_the_schema_documents_every_route_with_ids_that_hold_slashes(api_schema):
    assert set(api_schema.raw_schema["paths"]) == set(OPERATIONS)
