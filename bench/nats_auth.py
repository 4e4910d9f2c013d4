"""The cost of NATS identities: minting a user, connecting with one vs anonymously, and a cold start with a
`nats:` grant (its user minted and written before the fork) vs without, on the real platform, same run.

    .venv/bin/python -m bench.nats_auth [--connects 200] [--cold 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import nats
from fx.nats_auth import Authority, mint_function_creds, write_secret
from fx.platform import Platform

from bench.run import at_zero, deploy
from tests.nats_server import nats_server


def ms(samples: list[float]) -> str:
    return f"p50 {statistics.median(samples) * 1000:.2f} ms, max {max(samples) * 1000:.2f} ms"


async def connect_times(url: str, creds: Path | None, n: int) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        nc = await nats.connect(url, user_credentials=str(creds) if creds else None)
        times.append(time.perf_counter() - started)
        await nc.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--cold", type=int, default=20, help="functions per kind, each called once from zero")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fx-nats-bench-") as name:
        tmp = Path(name)
        authority = Authority.create()
        started = time.perf_counter()
        for _ in range(1000):
            mint_function_creds(authority.signer, "f", 1, ["users.created"], [], 3600)
        print(f"mint a function's creds: {(time.perf_counter() - started) * 1000:.3f} µs each (1000)")

        (tmp / "server.conf").write_text(authority.server_config())
        write_secret(tmp / "gateway.creds", authority.signer.mint("gateway"))
        with nats_server(tmp / "anon") as url:
            anonymous = asyncio.run(connect_times(url, None, args.connects))
        with nats_server(tmp / "auth", tmp / "server.conf") as url:
            with_creds = asyncio.run(connect_times(url, tmp / "gateway.creds", args.connects))
        print(f"connect, anonymous:  {ms(anonymous)}")
        print(f"connect, with creds: {ms(with_creds)}")

        with Platform(tmp / "state", ports="free") as p:
            names = {kind: [f"{kind}-{i}" for i in range(args.cold)] for kind in ("plain", "granted")}
            idle = "scale: {idle_timeout: 2}"  # back at zero soon after the replica its deploy started
            settings = {
                "plain": f"{{path: ., {idle}}}",
                "granted": f"{{path: ., {idle}, nats: {{publish: [bench.out]}}}}",
            }
            manifest = "functions:\n" + "".join(
                f"  {n}: {settings[kind]}\n" for kind, fns in names.items() for n in fns
            )
            deploy(tmp / "cold", p, manifest)
            at_zero(p, [n for fns in names.values() for n in fns])
            cold: dict[str, list[float]] = {"plain": [], "granted": []}
            with httpx.Client(timeout=30) as client:
                for plain, granted in zip(names["plain"], names["granted"], strict=True):  # interleaved
                    for kind, fn in (("plain", plain), ("granted", granted)):
                        started = time.perf_counter()
                        client.get(f"{p.gateway_url}/function/{fn}/").raise_for_status()
                        cold[kind].append(time.perf_counter() - started)
        print(f"cold start, no grant:   {ms(cold['plain'])}")
        print(f"cold start, with grant: {ms(cold['granted'])}")


if __name__ == "__main__":
    main()
