"""The controller's Artifacts as the artifact server uses them: zips it has, by digest."""

from __future__ import annotations

from pathlib import Path

from nats.js.errors import ObjectNotFoundError


class FakeArtifacts:
    def __init__(self, root: Path, zips: dict[str, bytes]) -> None:
        self.paths = {}
        for digest, data in zips.items():
            path = root / f"{digest.replace(':', '-')}.zip"
            path.write_bytes(data)
            self.paths[digest] = path

    async def ensure_local(self, digest: str) -> Path:
        if digest not in self.paths:
            raise ObjectNotFoundError
        return self.paths[digest]
