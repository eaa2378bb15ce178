"""The shipped Grafana dashboard's panels, filled by a benchmark run and photographed: a tiny Atelier, a real
Prometheus scraping it every second with the shipped scrape config (deploy/prometheus.yml, its target adapted), a few
minutes of mixed work (image jobs, some of them repeated for cache hits, chat replies, reads over the read limit),
then every target of deploy/grafana/dashboards/atelier.json is asked of Prometheus over the run (/api/v1/query_range,
as Grafana's Prometheus data source asks it) and the answers are drawn by Grafana's own panel library, @grafana/ui
(PanelChrome, TimeSeries, BigValue; Apache-2.0), laid out by the dashboard's gridPos, and photographed by headless
Chromium.

    python bench/grafana_panels.py [--seconds 240] [--out docs/images/grafana-dashboard.png]

This is not the Grafana server: it is not on this machine's registries (Debian dropped it; PyPI and npm hold only
placeholders) and its server is AGPL, which this workplace does not use. The page in bench/grafana_panels/ reads the
dashboard JSON as shipped: panel types, titles, units, legends, stacking, fill and the stat panels' reductions.
Needs Debian's prometheus and chromium, and `npm ci` in bench/grafana_panels/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.accounts import AccountService  # noqa: E402
from settings import Settings  # noqa: E402
from storage.db import open_database  # noqa: E402
from tests.live.prometheus import (  # noqa: E402
    DASHBOARD,
    Prometheus,
    adapted_config,
    dashboard_queries,
    prometheus_server,
    wait_for_scrapes,
)
from tests.server import serve  # noqa: E402

PAGE = ROOT / "bench" / "grafana_panels"
# Prometheus scrapes every SCRAPE_S seconds; the panels are asked one point a scrape, and $__rate_interval is what
# Grafana makes of that when its data source's "Scrape interval" says the same: max(step + scrape, 4 x scrape).
SCRAPE_S = 3
RATE_INTERVAL = f"{4 * SCRAPE_S}s"
PROMPTS = ("a lighthouse at dusk", "a red fox in snow", "a bowl of ramen", "a paper boat")
USERS = ("ana", "ben", "chloe")
ANSWERED = (200, 429)  # a refusal by a limit is part of the picture; anything else stops the run


def one_round(http: httpx.Client, user: int, n: int) -> None:
    """A round of one user's work: one to three image jobs (now and then one asked before: a cache hit), a chat
    reply, and reads of the history (over the 4/minute read limit now and then)."""
    for k in range(1 + (n + user) % 3):
        seed = 1 if (n + k) % 4 == 3 else 100 * user + 10 * n + k
        job = {"prompt": PROMPTS[(n + k) % len(PROMPTS)], "width": 64, "height": 64, "steps": 2 + n % 3,
               "seed": seed, "batch_size": 1 + (n + k) % 3}
        check(http.post("/sdapi/v1/txt2img", json=job))
    check(http.post("/v1/chat/completions", json={"model": "tiny-gptq", "max_tokens": 8 + 8 * (n % 3),
                                                  "messages": [{"role": "user", "content": f"question {n}"}]}))
    for _ in range(1 + n % 3):
        check(http.get("/api/history"))


def check(answer: httpx.Response) -> None:
    """Stop the run on an answer that is neither done nor refused by a limit."""
    if answer.status_code not in ANSWERED:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}")


def user_load(url: str, key: str, user: int, stop: threading.Event, failures: list[BaseException]) -> None:
    """One user's rounds, a pause of one to five seconds between them, until `stop`."""
    try:
        with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}"}) as http:
            n = 0
            while not stop.is_set():
                one_round(http, user, n)
                n += 1
                stop.wait(1 + (3 * n + user) % 5)
    except BaseException as failure:  # handed to the main thread, which raises it
        failures.append(failure)


def answers(prometheus: Prometheus, start: float, end: float) -> dict[str, Any]:
    """Each panel's targets asked over [start, end] as Grafana asks them: `$instance` All (a regex), its
    `$__rate_interval`, one point a scrape; by "<panel id>/<refId>"."""
    found: dict[str, Any] = {}
    for query in dashboard_queries(rate_interval=RATE_INTERVAL):
        reply = httpx.get(f"{prometheus.url}/api/v1/query_range", timeout=30,
                          params={"query": query.expr, "start": start, "end": end, "step": SCRAPE_S}).json()
        if reply["status"] != "success":
            raise RuntimeError(f"{query.panel}: {query.expr}: {reply}")
        found[query.key] = reply["data"]["result"]
    return found


def under_load(url: str, keys: list[str], seconds: float) -> tuple[float, float]:
    """Three users at work for `seconds` (each starting a little after the one before); the span to show, which
    ends while they are still at work, as a dashboard looked at during the day."""
    stop, failures = threading.Event(), list[BaseException]()
    users = [threading.Thread(target=user_load, args=(url, key, n, stop, failures)) for n, key in enumerate(keys)]
    start = time.time()
    for user in users:
        user.start()
        time.sleep(seconds / 6)
    time.sleep(seconds / 2)
    end = time.time()
    time.sleep(2 * SCRAPE_S)  # the last moments scraped
    stop.set()
    for user in users:
        user.join()
    if failures:
        raise failures[0]
    return start - 10 * SCRAPE_S, end


def run_load(seconds: float) -> dict[str, Any]:
    """A tiny Atelier under `seconds` of work, scraped by Prometheus: the dashboard and its answers."""
    data = Path(tempfile.mkdtemp(prefix="atelier-grafana-bench-"))
    settings = Settings(profile="tiny", data_dir=data, warmup=False, limit_reads="4/minute",
                        limit_image_jobs="100/minute", limit_chat_messages="100/minute")
    settings.ensure_dirs()
    open_database(settings.database_location)
    for name in USERS:
        AccountService().add(name, "a long enough password")
    board = json.loads(DASHBOARD.read_text())
    apps: list[Any] = []
    try:
        with serve(settings, apps) as url:
            keys = [apps[0].state.services.api_keys.create(name, "bench")[0] for name in USERS]
            target = url.removeprefix("http://").rstrip("/")
            with prometheus_server(adapted_config(target, scrape_s=SCRAPE_S)) as prometheus:
                wait_for_scrapes(prometheus, 2)
                start, end = under_load(url.rstrip("/"), keys, seconds)
                return {"board": board, "from": start, "to": end, "step": SCRAPE_S,
                        "results": answers(prometheus, start, end)}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def photograph(found: dict[str, Any], out: Path) -> None:
    """Build the page with the answers in it and photograph it in headless Chromium (served over loopback: a
    module script does not load from file://)."""
    subprocess.run(["npx", "vite", "build", "--logLevel", "warn"], cwd=PAGE, check=True, timeout=600)
    dist = PAGE / "dist"
    html = (dist / "index.html").read_text()
    data = json.dumps(found).replace("</", "<\\/")
    (dist / "index.html").write_text(html.replace("<head>", f"<head><script>window.__PANELS__ = {data};</script>", 1))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(dist)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        subprocess.run(["node", "shoot.mjs", url, str(out.resolve())], cwd=PAGE, check=True, timeout=120)
    finally:
        server.shutdown()


def main() -> None:
    """Run the load, ask Prometheus, draw and photograph the panels."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=240, help="how long the three users work")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "grafana-dashboard.png")
    parser.add_argument("--save", type=Path, help="also keep Prometheus' answers here (JSON)")
    parser.add_argument("--load", type=Path, help="draw answers saved by --save instead of running the load")
    args = parser.parse_args()
    found = json.loads(args.load.read_text()) if args.load else run_load(args.seconds)
    if args.save:
        args.save.write_text(json.dumps(found))
    photograph(found, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
