"""Schema check of the dashboards here against Grafana's own schema, as generated into
grafana-foundation-sdk (Grafana Labs' maintained SDK: models generated from the CUE kinds of
Grafana's dashboard, panel plugins and Prometheus data source). Each dashboard, each panel's
options and field config (by its plugin's model) and each Prometheus query is decoded by its
model and encoded again; a key the schema does not know is dropped on the way, and is reported.
The only keys let through are those the schema leaves open: a data source's own annotation
fields (the Prometheus and PostgreSQL annotation queries). Run by scripts/test:

    .venv/bin/python monitoring/dashboards/check.py monitoring/dashboards/*.json
"""
import json
import sys

from grafana_foundation_sdk.models import dashboard, prometheus, stat, statetimeline, table, timeseries

PLUGINS = {"timeseries": timeseries, "stat": stat, "table": table, "state-timeline": statetimeline}
# The guide's six panels (§9 "Deployment Dashboard").
GUIDE_PANELS = [
    "Deployment timeline",
    "Error rate before / after",
    "Latency comparison (p95)",
    "Resource utilisation",
    "Application health",
    "Recent deployments",
]
# Annotation fields a data source defines for itself (open in Grafana's schema).
OPEN_ANNOTATION_KEYS = {"expr", "titleFormat", "textFormat", "tagKeys", "step", "rawSql", "format", "refId"}


def plain(v):
    return json.loads(json.dumps(v, default=lambda o: o.to_json() if hasattr(o, "to_json") else getattr(o, "value", str(o))))


def lost(given, kept, path, errors, open_keys=frozenset()):
    if isinstance(given, dict):
        for k, v in given.items():
            if not isinstance(kept, dict) or k not in kept:
                if k not in open_keys:
                    errors.append(f"{path}/{k}: not in Grafana's schema")
            else:
                lost(v, kept[k], f"{path}/{k}", errors, open_keys)
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            lost(a, b, f"{path}[{i}]", errors, open_keys)


def check(path):
    errors = []
    d = json.load(open(path, encoding="utf-8"))
    kept = plain(dashboard.Dashboard.from_json(d).to_json())
    for section in ("panels", "annotations"):
        if section not in kept:
            errors.append(f"/{section}: missing")
    lost({k: v for k, v in d.items() if k not in ("annotations",)}, kept, "", errors)
    for i, a in enumerate(d.get("annotations", {}).get("list", [])):
        lost(a, kept["annotations"]["list"][i], f"/annotations/list[{i}]", errors, OPEN_ANNOTATION_KEYS)
    titles = []
    for p in d.get("panels", []):
        where = f"panel {p.get('id')} ({p.get('title')})"
        titles.append(p.get("title"))
        plugin = PLUGINS.get(p.get("type"))
        if plugin is None:
            errors.append(f"{where}: panel type {p.get('type')!r} is not one this check knows")
            continue
        lost(p.get("options", {}), plain(plugin.Options.from_json(p.get("options", {})).to_json()), f"{where} options", errors)
        custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None and hasattr(plugin, "FieldConfig"):
            lost(custom, plain(plugin.FieldConfig.from_json(custom).to_json()), f"{where} fieldConfig.custom", errors)
        if not p.get("targets"):
            errors.append(f"{where}: no query")
        for t in p.get("targets", []):
            lost(t, plain(prometheus.Dataquery.from_json(t).to_json()), f"{where} target {t.get('refId')}", errors)
            if not t.get("expr"):
                errors.append(f"{where} target {t.get('refId')}: no expr")
    if titles != GUIDE_PANELS:
        errors.append(f"panels {titles} are not the guide's {GUIDE_PANELS}")
    return errors


def main():
    failed = False
    for path in sys.argv[1:]:
        errors = check(path)
        for e in errors:
            print(f"{path}: {e}", file=sys.stderr)
        failed |= bool(errors)
        if not errors:
            print(f"{path}: matches Grafana's dashboard schema (grafana-foundation-sdk)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
