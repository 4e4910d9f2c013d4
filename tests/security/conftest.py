"""The security tests drive the real platform as the integration tests do, with the same fixtures."""

from tests.integration.conftest import make_function, platform  # noqa: F401
