"""The fake upstreams and the app over them, shared with the assistant's tests."""

from tests.turns.conftest import (  # noqa: F401 - fixtures
    api,
    fake_upstreams,
    upstream,
    upstream_app,
)
