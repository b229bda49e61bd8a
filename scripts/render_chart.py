#!/usr/bin/env python3
"""Renders charts/lameduck to one JSON array of Kubernetes objects (hooks
left out), with Helm's own engine, for the e2e suite's local backend:

    render_chart.py [--values FILE]... [--kube-version 1.34.0] --out FILE

The suite reads the rendered Deployment (preStop, grace period, container
arguments) rather than restating the chart's defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chart_check  # noqa: E402  (same directory; brings Helm's engine)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", action="append", default=[], type=Path, help="values file (repeatable)")
    parser.add_argument("--kube-version", default="1.34.0")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    values: dict = {}
    for path in args.values:
        values = merge(values, chart_check.load_values(path))
    try:
        rendered = chart_check.render(chart_check.ROOT / "charts" / "lameduck", values, args.kube_version)
    except Exception as err:  # the engine reports template failures as exceptions
        print(f"render_chart: {err}", file=sys.stderr)
        return 1
    objects = [doc.obj for doc in chart_check.parse_docs(rendered) if not doc.is_hook]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(objects, indent=1))
    return 0


def merge(base: dict, extra: dict) -> dict:
    """Deep merge, as helm merges several --values files."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
