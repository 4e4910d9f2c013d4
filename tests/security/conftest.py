"""The security tests run against the real embedded platform, as the integration tests do."""

from tests.integration.conftest import RunningPlatform, make_function, platform  # noqa: F401
