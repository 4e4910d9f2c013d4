"""A real Prometheus (Debian's package) on a free loopback port, scraping the embedded platform every second."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from tests.cluster.shell import ensure_apt_packages
from tests.loopback import free_port
from tests.waiting import wait_for

SCRAPE_INTERVAL = "1s"
# The alert rules operators load (docs/operations.md), evaluated here against the scenario's real series.
ALERT_RULES = Path(__file__).resolve().parents[2] / "charts/fx/alerts/fx-alerts.yaml"


class Prometheus:
    def __init__(self, workdir: Path, gateway_url: str, controller_url: str, token: str) -> None:
        ensure_apt_packages({"prometheus": "prometheus", "promtool": "prometheus"})
        workdir.mkdir(parents=True, exist_ok=True)
        token_file = workdir / "admin-token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {"job_name": "fx-gateway", "static_configs": [{"targets": [urlsplit(gateway_url).netloc]}]},
                {
                    "job_name": "fx-controller",
                    "authorization": {"credentials_file": str(token_file)},
                    "static_configs": [{"targets": [urlsplit(controller_url).netloc]}],
                },
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={urlsplit(self.url).netloc}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, 60, "Prometheus to be ready")
        wait_for(self._scraping, 30, "Prometheus to scrape the gateway and the controller")

    def _ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited: see {self.log.name}"
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def _scraping(self) -> bool:
        ups = self.query("up")
        return len(ups) == 2 and all(float(s["value"][1]) == 1 for s in ups)

    def query(self, expr: str) -> list[dict]:
        """An instant query's series, as of now."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        assert r.status_code == 200, f"{expr}: {r.text}"
        return r.json()["data"]["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        r = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": expr, "start": start, "end": end, "step": step},
            timeout=30,
        )
        assert r.status_code == 200, f"{expr}: {r.text}"
        return r.json()["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The one value an instant query returns; None when it returns nothing."""
        series = self.query(expr)
        assert len(series) <= 1, f"{expr}: {len(series)} series"
        return float(series[0]["value"][1]) if series else None

    def rules(self) -> list[dict]:
        """Every loaded rule, with its health and (for alerts) its alerts."""
        r = httpx.get(f"{self.url}/api/v1/rules", timeout=30)
        assert r.status_code == 200, r.text
        return [rule for group in r.json()["data"]["groups"] for rule in group["rules"]]

    def label_values(self, label: str, match: str) -> list[str]:
        r = httpx.get(f"{self.url}/api/v1/label/{label}/values", params={"match[]": match}, timeout=30)
        return r.json()["data"]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def finite_points(series: list[dict]) -> list[float]:
    return [v for s in series for _, raw in s["values"] if math.isfinite(v := float(raw))]
