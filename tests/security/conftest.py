"""The security tier runs attacks against the real embedded platform: the integration tier's fixtures."""

from tests.integration.conftest import make_function, platform  # noqa: F401 - pytest fixtures
