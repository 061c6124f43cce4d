"""Benchmarks run on the lab (root): they share the integration tier's session lab."""

from tests.integration.conftest import lab  # noqa: F401 - the session lab fixture
