"""``mdp demo-summary``: where to look after ``make demo``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from my_data_platform.cli._common import console, object_store


def demo_summary() -> None:
    """Print where to look after `make demo`."""
    from my_data_platform.cli.sql import analyst_session
    from my_data_platform.defs.warehouse.location import location_from_settings

    loc = location_from_settings()
    with analyst_session() as session:
        _, rows = session.run(
            "SELECT (SELECT count(*) FROM warehouse.events), "
            "(SELECT count(*) FROM warehouse.events_quarantine), "
            "(SELECT count(*) FROM warehouse.photos), (SELECT count(*) FROM warehouse.users)"
        )
        events, quarantined, photos, users = rows[0]
        console.print(
            f"\n[bold]warehouse[/]: {events:,} events, {quarantined:,} quarantined lines, "
            f"{photos:,} photos, {users:,} users  ({loc.describe()})"
        )
        try:
            _, frows = session.run("SELECT count(*), avg(label) FROM features.training_examples")
            console.print(
                f"[bold]features[/]:  {frows[0][0]:,} training examples, positive rate "
                f"{float(frows[0][1] or 0):.1%}  (mdp features get <photo_id>)"
            )
        except Exception:
            pass
    try:
        from my_data_platform.defs.datasets.resources import version_store_from_settings

        vs = version_store_from_settings()
        head = vs.log("main", 1)[0]
        console.print(
            f"[bold]dataset[/]:   main @ {head.id[:12]} ({head.message}); "
            "mdp datasets log | show main"
        )
    except Exception:
        pass
    try:
        from my_data_platform.core.model_registry import read_manifest

        m = read_manifest(object_store())
        sm = m.get("summary") or {}

        def f(v: Any) -> str:
            return "n/a" if v is None else f"{float(v):.3f}"

        table = Table(title=f"popularity model on dataset {m['dataset_commit'][:12]} (test split)")
        for col in ("scorer", "ROC AUC", "log loss"):
            table.add_column(col)
        rows = [("model", m["metrics"]), *(m.get("baselines") or {}).items()]
        if m.get("oracle"):
            rows.append(("oracle (hidden popularity)", m["oracle"]))
        for name, r in rows:
            table.add_row(name, f(r["test"].get("roc_auc")), f(r["test"].get("log_loss")))
        console.print(table)
        frac = sm.get("fraction_of_oracle")
        console.print(
            f"[bold]model[/]:     beats both baselines: {sm.get('beats_baselines')}; "
            f"{'n/a' if frac is None else f'{frac:.1%}'} of the oracle's ROC AUC; "
            "mdp model show --format json"
        )
        console.print(
            f"[bold]FiftyOne[/]:  mdp explore {m['dataset_commit'][:12]}  ->  "
            "http://127.0.0.1:5151 (sort by prediction_loss for the worst mistakes)"
        )
    except Exception as exc:
        console.print(f"[bold]model[/]:     not trained yet ({exc})")
    console.print("[bold]Dagster UI[/]:   make dev   ->  http://127.0.0.1:3000")
    console.print(
        '[bold]SQL[/]:          .venv/bin/mdp sql "SELECT * FROM warehouse.photo_engagement_daily '
        'ORDER BY likes DESC LIMIT 10"'
    )
