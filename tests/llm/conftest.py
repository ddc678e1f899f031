"""The mock OpenAI-compatible server (tests/llm/mock_openai.py), one per test module."""

from __future__ import annotations

import pytest
from mock_openai import start


@pytest.fixture(scope="module")
def server():
    """(state, base_url) of a mock server on a free loopback port."""
    srv, state, url = start()
    yield state, url
    srv.shutdown()
    srv.server_close()
