"""Prometheus' own graph page for the dashboard's main queries after a small benchmark load: a tiny Atelier, a real
Prometheus scraping it every second with the shipped scrape config (deploy/prometheus.yml, its target adapted), two
rounds of image jobs, chat replies and reads over the read limit (tests/live/prometheus.small_load), then headless
Chromium photographs /graph with the queries below, as the dashboard's panels run them.

    python bench/prometheus_graph.py [--out docs/images/prometheus-graph.png]

A Grafana screenshot needs Grafana (not packaged in Debian) or a Docker engine (none on the machine this was made
on): this shows the same PromQL in Prometheus' graph view instead. Needs Debian's prometheus and chromium, and the
React client's node_modules (npm ci in react_frontend/) for Playwright.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.accounts import AccountService  # noqa: E402
from settings import Settings  # noqa: E402
from storage.db import open_database  # noqa: E402
from tests.live.prometheus import (  # noqa: E402
    RATE_INTERVAL,
    adapted_config,
    dashboard_queries,
    prometheus_server,
    small_load,
    wait_for_scrapes,
)
from tests.server import serve  # noqa: E402

# The dashboard's main panels, by title and legend (their queries come from the dashboard JSON itself).
MAIN = [("Jobs by kind, status and model", "{{kind}} {{status}} {{model}}"), ("Job duration", "p95 {{kind}}"),
        ("Tokens per second", "{{type}}"), ("Images per second by model", "{{model}}")]
# Headless Chromium driven by the React client's Playwright (react_frontend/node_modules): the page at the top, each
# graph drawn, the whole page photographed.
SHOOT = """
const { chromium } = require("playwright-core");
(async () => {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(process.argv[1]);
  await page.getByText(/Load time:/).nth(3).waitFor({ timeout: 30000 }); // every query answered
  await page.waitForTimeout(2000);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: process.argv[2], fullPage: true });
  await browser.close();
})();
"""


def graph_url(base: str) -> str:
    """Prometheus' /graph with one graph tab per main query, over the last minute (the whole load)."""
    found = {(q.panel, q.legend): q.expr for q in dashboard_queries(rate_interval=RATE_INTERVAL)}
    params: dict[str, str] = {}
    for n, key in enumerate(MAIN):
        params |= {f"g{n}.expr": found[key], f"g{n}.tab": "0", f"g{n}.range_input": "1m", f"g{n}.stacked": "0",
                   f"g{n}.show_exemplars": "0"}
    return f"{base}/graph?{urlencode(params)}"


def main() -> None:
    """Run the load, photograph the graphs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "prometheus-graph.png")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="atelier-prometheus-bench-"))
    settings = Settings(profile="tiny", data_dir=data, warmup=False, limit_reads="4/minute")
    settings.ensure_dirs()
    open_database(settings.database_location)
    AccountService().add("bench", "a long enough password")
    apps: list[object] = []
    with serve(settings, apps) as url:
        key, _ = apps[0].state.services.api_keys.create("bench", "bench")  # type: ignore[attr-defined]
        with prometheus_server(adapted_config(url.removeprefix("http://").rstrip("/"))) as prometheus:
            wait_for_scrapes(prometheus, 2)
            for first in (True, False):
                small_load(url.rstrip("/"), {"Authorization": f"Bearer {key}"}, first)
                wait_for_scrapes(prometheus, 5)
            subprocess.run(["node", "-e", SHOOT, graph_url(prometheus.url), str(args.out.resolve())],
                           cwd=ROOT / "react_frontend", check=True, timeout=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
