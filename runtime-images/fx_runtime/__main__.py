"""`python -m fx_runtime` / `fx-runtime`: one replica, configured by its environment (see README.md)."""

from __future__ import annotations

import sys

from . import logs, replica


def _report(event: dict) -> None:
    if event["event"] == "ready":
        logs.write(f"fx-runtime ready on {event['endpoint']} (init {event['init_ms']:.2f} ms)\n")
        logs.flush()


def main() -> None:
    sys.exit(replica.run(_report))


if __name__ == "__main__":
    main()
