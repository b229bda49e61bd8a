"""The "Shutdowns" row of deploy/grafana/lameduck.json, drawn as a PNG from
the local cluster's Prometheus: the dashboard's own queries, with its
variables filled in for a time range, evaluated by the real Prometheus, and
each panel drawn as Grafana would (a bar gauge, a table, a time series).

Grafana itself does not run here: its Go module builds the server, but the
web interface it serves is a separate front-end build that neither the Go
module nor any registry reachable here provides.

    python3 scripts/cluster dashboard --namespace scrape-30s \
        --runs target/e2e/scrape-30s.json target/e2e/scrape-30s-forced.json --out docs/shutdowns.png
"""
import datetime
import json
import pathlib
import re
import urllib.parse

from errors import Fail
from layout import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "lameduck.json"
ROW = "Shutdowns"
PROMETHEUS = "/api/v1/namespaces/monitoring/services/prometheus:web/proxy"


def row_panels(dashboard, title=ROW):
    """The panels of the row titled `title`, in the order Grafana lays them out."""
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    inside, found = [], False
    for panel in panels:
        if panel.get("type") == "row":
            if found:
                break
            found = panel.get("title") == title
            # A collapsed row keeps its panels inside it.
            inside += panel.get("panels", []) if found else []
            continue
        if found:
            inside.append(panel)
    if not found:
        raise Fail(f"{DASHBOARD.relative_to(ROOT)} has no row titled {title!r}")
    return inside


def expand(expr, namespace, seconds):
    """A panel's PromQL with the dashboard's variables filled in, as Grafana
    does for a time range of `seconds`."""
    # A DNS label: no character a PromQL string or regex would read apart.
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
        raise Fail(f"{namespace!r} is not a namespace name")
    values = {
        "$__range": f"{max(1, int(seconds))}s",
        # Grafana's: at least four scrape intervals (30 s here).
        "$__rate_interval": "2m",
        "$namespace": namespace,
        "$pod": ".*",
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    if "$" in re.sub(r"\$\d", "", expr):
        raise Fail(f"a variable left in the query: {expr}")
    return expr


def query_path(expr, at=None, start=None, end=None, step=None):
    if start is None:
        return f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at})
    params = {"query": expr, "start": start, "end": end, "step": step}
    return f"{PROMETHEUS}/api/v1/query_range?" + urllib.parse.urlencode(params)


def legend(fmt, labels):
    """Grafana's `{{label}}` legend format."""
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def span_of(runs):
    """The time range of the rollout suite's run records (Unix seconds)."""
    records = [json.loads(pathlib.Path(r).read_text()) for r in runs]
    return (min(r["started_ms"] for r in records) / 1e3 - 60,
            max(r["finished_ms"] for r in records) / 1e3 + 30)


def fetch(get, panels, namespace, start, end):
    """Each panel with its targets' results: (panel, [(target, result)])."""
    seconds = end - start
    out = []
    for panel in panels:
        results = []
        for target in panel.get("targets", []):
            expr = expand(target["expr"], namespace, seconds)
            if target.get("instant"):
                answer = get(query_path(expr, at=end))
            else:
                answer = get(query_path(expr, start=start, end=end, step=15))
            if answer.get("status") != "success":
                raise Fail(f"Prometheus refused {expr}: {answer.get('error')}")
            results.append((target, answer["data"]["result"]))
        out.append((panel, results))
    return out


def table_rows(results):
    """A table panel's rows: one per pod, a column per query (the order of
    the panel's targets), as Grafana's "merge" transformation gives them."""
    rows = {}
    for column, (_, result) in enumerate(results):
        for series in result:
            m = series["metric"]
            key = (m.get("rollout", ""), m.get("pod", ""))
            rows.setdefault(key, [None] * len(results))[column] = float(series["value"][1])
    return [(*key, *values) for key, values in sorted(rows.items())]


def render(fetched, title, out):
    # Imported here: only drawing needs it (scripts/just dashboard installs it).
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [0.8 + 0.3 * len(table_rows(r)) if p.get("type") == "table" else 3.2 for p, r in fetched]
    fig, axes = plt.subplots(len(fetched), 1, figsize=(12, sum(heights) + 1),
                             gridspec_kw={"height_ratios": heights})
    fig.suptitle(title, fontsize=13)
    for ax, (panel, results) in zip(axes, fetched):
        ax.set_title(panel.get("title", ""), loc="left", fontsize=11)
        kind = panel.get("type")
        if kind == "table":
            _table(ax, results)
        elif kind == "bargauge":
            _bars(ax, results)
        else:
            _lines(ax, results)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _table(ax, results):
    ax.axis("off")
    rows = table_rows(results)
    header = ["pod (its rollout's ReplicaSet, then its own suffix)", "shutdown started (UTC)", "duration (s)",
              "outcome", "aborted requests", "aborted upgraded"]
    cells = []
    for _rollout, pod, started, duration, phase, aborted, upgraded in rows:
        when = (datetime.datetime.fromtimestamp(started / 1e3, datetime.timezone.utc).strftime("%H:%M:%S")
                if started else "-")
        outcome = {3.0: "clean", 4.0: "forced"}.get(phase, "-")
        cells.append([pod, when, f"{duration:.3f}" if duration is not None else "-", outcome,
                      f"{aborted:.0f}" if aborted is not None else "-",
                      f"{upgraded:.0f}" if upgraded is not None else "-"])
    if not cells:
        ax.text(0.5, 0.5, "no shutdown in this range", ha="center", va="center")
        return
    table = ax.table(cellText=cells, colLabels=header, loc="center", cellLoc="left",
                     colWidths=[0.34, 0.16, 0.1, 0.1, 0.14, 0.16])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.3)


def _bars(ax, results):
    labels, values = [], []
    for target, result in results:
        for series in result:
            labels.append(legend(target.get("legendFormat"), series["metric"]))
            values.append(float(series["value"][1]))
    colours = ["#c0392b" if "forced" in label else "#2e86c1" for label in labels]
    ax.barh(labels, values, color=colours)
    ax.set_xlabel("pods")
    ax.xaxis.get_major_locator().set_params(integer=True)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.0f}", va="center")


def _lines(ax, results):
    import matplotlib.dates as mdates
    for target, result in results:
        for series in result:
            t = [datetime.datetime.fromtimestamp(float(at), datetime.timezone.utc) for at, _ in series["values"]]
            v = [float(x) for _, x in series["values"]]
            ax.plot(t, v, drawstyle="steps-post", marker="o", markersize=3,
                    label=legend(target.get("legendFormat"), series["metric"]))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.set_ylabel("seconds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")


def draw(get, namespace, runs, out):
    start, end = span_of(runs)
    panels = row_panels(json.loads(DASHBOARD.read_text()))
    fetched = fetch(get, panels, namespace, start, end)
    when = datetime.datetime.fromtimestamp(start, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    render(fetched, f"lameduck — {ROW} (namespace {namespace}, from {when} UTC, Prometheus scraping every 30 s)",
           out)
    return out
