"""OpenAI's /v1, AUTOMATIC1111's /sdapi/v1 and sd-webui-controlnet's /controlnet, fuzzed from their own OpenAPI
documents (schemathesis): whatever a client sends, no 5xx, and every answer matches the document (status, content
type, body). The server's limits are set so that a request the fuzzer gets right runs a small job (at most 72×72
pixels, 2 steps, 2 images) or a short reply (at most 32 tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import allow_header_conformance, positive_data_acceptance, unsupported_method

from api.server import create_app
from services.accounts import AccountService
from services.api_keys import ApiKeyService
from storage.db import open_database
from tests.services.conftest import tiny_settings


@pytest.fixture(scope="module")
def app_and_key(tmp_path_factory: pytest.TempPathFactory, tiny_sd_dir: Path,
                tiny_r1_gptq_dir: Path) -> tuple[Any, str]:
    # The UI's sliders need a range (their minimum below their maximum), so the bounds are just above the least.
    config = tiny_settings(tmp_path_factory.mktemp("data"), tiny_sd_dir, tiny_r1_gptq_dir, max_size=72, max_steps=2,
                           max_batch_count=2, max_new_tokens_limit=32, max_new_tokens=4, thinking_budget=2,
                           upload_max_bytes=32 * 1024, limit_reads="100000/minute", limit_image_jobs="100000/minute",
                           limit_chat_messages="100000/minute", limit_logins="100000/minute",
                           mcp="off")  # each schema below starts the app's lifespan, and MCP's starts once
    config.ensure_dirs()
    open_database(config.db_path)
    AccountService().add("alice", "correct horse battery")
    key, _ = ApiKeyService().create("alice", "fuzz")
    return create_app(config), key


@pytest.fixture(scope="module")
def v1_schema(app_and_key: tuple[Any, str]) -> Any:
    return schemathesis.openapi.from_asgi("/v1/openapi.json", app_and_key[0])


@pytest.fixture(scope="module")
def sdapi_schema(app_and_key: tuple[Any, str]) -> Any:
    return schemathesis.openapi.from_asgi("/sdapi/v1/openapi.json", app_and_key[0])


@pytest.fixture(scope="module")
def controlnet_schema(app_and_key: tuple[Any, str]) -> Any:
    return schemathesis.openapi.from_asgi("/controlnet/openapi.json", app_and_key[0])


v1 = schemathesis.pytest.from_fixture("v1_schema")
controlnet = schemathesis.pytest.from_fixture("controlnet_schema")
sdapi = schemathesis.pytest.from_fixture("sdapi_schema")
# A method a route lacks falls through to Gradio's catch-all mount at /, which answers 404 rather than 405. And a
# request the schema allows may still be refused, naming the field, for what a schema cannot say (an empty prompt, a
# size that is no multiple of 8, a model that is not there): those checks are the services', tested on their own.
# Starlette's 405 for a path with a GET and a POST route (/options) lists the first route's method alone in Allow.
EXCLUDED = [unsupported_method, positive_data_acceptance, allow_header_conformance]


@v1.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_v1_never_errs_and_answers_as_documented(case: Any, app_and_key: tuple[Any, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {app_and_key[1]}"}, excluded_checks=EXCLUDED)


@sdapi.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_sdapi_never_errs_and_answers_as_documented(case: Any, app_and_key: tuple[Any, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {app_and_key[1]}"}, excluded_checks=EXCLUDED)


@controlnet.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_controlnet_never_errs_and_answers_as_documented(case: Any, app_and_key: tuple[Any, str]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {app_and_key[1]}"}, excluded_checks=EXCLUDED)
