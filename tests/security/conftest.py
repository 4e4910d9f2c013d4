"""The security tests drive the real embedded platform, with the integration tests' fixtures."""

from tests.integration.conftest import make_function, platform  # noqa: F401 - pytest fixtures
