"""Human labels under quality control: annotations in, consensus labels out.

``warehouse/annotations`` gathers what annotators answered (the OLTP ``photo_annotations``
table, from a vendor or the team's own tool, plus Label Studio exports landed under
``landing/annotations/``) and validates every row against the rulebook; anything wrong is
quarantined with a reason, never dropped. ``labels/image_content`` turns the answers into one
label per photo with Dawid-Skene consensus, and audits the annotators on gold items.
"""

import dagster as dg
import polars as pl

from my_data_platform.core import consensus as C
from my_data_platform.core.oltp import as_utc
from my_data_platform.core.rulebook import image_content_rulebook
from my_data_platform.core.stats import judge_rate_floor
from my_data_platform.defs.features.inputs import warehouse_input
from my_data_platform.defs.features.resources import GroundTruthResource
from my_data_platform.defs.judged import judged_check
from my_data_platform.defs.labels.imports import QUARANTINE_SCHEMA, landed_label_studio
from my_data_platform.defs.lake.resources import ObjectStoreResource
from my_data_platform.defs.metadata import markdown_preview, png_metadata, table_metadata
from my_data_platform.defs.sources.resources import OLTPResource

GROUP = "labels"
CONSENSUS_ACCURACY_FLOOR = 0.85
"""Consensus labels must be right on at least this share of gold items (judged with its n)."""
AGREEMENT_FLOOR = 0.4
"""Krippendorff's alpha below this warns: the rulebook or the annotators need attention."""


def _empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def _read_oltp(
    context: dg.AssetExecutionContext, oltp: OLTPResource, table: str, columns: list[str]
) -> pl.DataFrame | None:
    if not oltp.has_table(table):
        context.log.warning(
            "OLTP table %s does not exist in %s: no annotations from it", table, oltp.describe()
        )
        return None
    return oltp.read_table(table, columns)


def validate_annotations(
    rows: pl.DataFrame, photo_ids: pl.Series, label_set: tuple[str, ...]
) -> tuple[pl.DataFrame, pl.DataFrame, int]:
    """``(usable rows, quarantined rows with a reason, superseded count)``.

    Reasons (the first failing rule wins): ``missing_field`` (a null),
    ``label_not_in_rulebook`` and ``unknown_photo``. The same ``annotation_id`` seen again (a
    Label Studio project exported in full every time, or an edited answer) is one annotation:
    the newest version is kept and the older ones are counted as superseded, not quarantined.
    """
    cols = list(C.ANNOTATION_SCHEMA)
    checked = rows.with_row_index("_order").with_columns(
        pl.when(pl.any_horizontal(pl.col(c).is_null() for c in cols))
        .then(pl.lit("missing_field"))
        .when(~pl.col("label").is_in(list(label_set)))
        .then(pl.lit("label_not_in_rulebook"))
        .when(~pl.col("photo_id").is_in(photo_ids.implode()))
        .then(pl.lit("unknown_photo"))
        .alias("reason")
    )
    valid = checked.filter(pl.col("reason").is_null())
    good = (
        valid.sort(["annotated_at", "_order"])
        .unique("annotation_id", keep="last", maintain_order=True)
        .sort("_order")
        .select(cols)
    )
    bad = checked.filter(pl.col("reason").is_not_null()).select(
        "annotation_id",
        "photo_id",
        "annotator",
        pl.col("label").str.slice(0, 200),
        "source",
        pl.lit(None, pl.String).alias("object_key"),
        pl.lit(None, pl.Int64).alias("task_index"),
        "reason",
        pl.when(pl.col("reason") == "missing_field")
        .then(
            pl.lit("null in ")
            + pl.concat_str(
                [pl.when(pl.col(c).is_null()).then(pl.lit(c)) for c in cols],
                separator=",",
                ignore_nulls=True,
            )
        )
        .when(pl.col("reason") == "label_not_in_rulebook")
        .then(pl.lit(f"label set is {', '.join(label_set)}"))
        .otherwise(None)
        .alias("detail"),
    )
    return good, bad.cast(QUARANTINE_SCHEMA), valid.height - good.height  # type: ignore[arg-type]


@dg.multi_asset(
    code_version="1",
    outs={
        "annotations": dg.AssetOut(
            key=["warehouse", "annotations"],
            group_name="warehouse",
            kinds={"duckdb", "polars"},
            description=(
                "Every usable annotation (OLTP photo_annotations and Label Studio imports): "
                "annotation_id, photo_id, annotator, label, annotated_at, source."
            ),
        ),
        "annotation_gold": dg.AssetOut(
            key=["warehouse", "annotation_gold"],
            group_name="warehouse",
            kinds={"duckdb", "polars"},
            description="Gold items (photo_id, label): photos whose content label is known.",
        ),
        "annotations_quarantine": dg.AssetOut(
            key=["warehouse", "annotations_quarantine"],
            group_name="warehouse",
            kinds={"duckdb", "polars"},
            description="Annotations and gold rows that could not be used, with the reason.",
        ),
    },
    ins={"photos": warehouse_input("photos", ["photo_id"])},
    deps=[["oltp", "photo_annotations"], ["oltp", "annotation_gold"], ["landing", "annotations"]],
)
def warehouse_annotations(
    context: dg.AssetExecutionContext,
    photos: pl.DataFrame,
    oltp: OLTPResource,
    object_store: ObjectStoreResource,
):
    """Annotations copied (ELT) from OLTP and imported from Label Studio exports, validated
    against the rulebook's label set and the known photos."""
    label_set = image_content_rulebook().label_set
    frames = []
    oltp_rows = _read_oltp(context, oltp, "photo_annotations", list(C.ANNOTATION_SCHEMA))
    if oltp_rows is not None:
        frames.append(as_utc(oltp_rows, "annotated_at").cast(C.ANNOTATION_SCHEMA))  # type: ignore[arg-type]
    imported, import_quarantine, files = landed_label_studio(object_store.get_store(), label_set)
    frames.append(imported.cast(C.ANNOTATION_SCHEMA))  # type: ignore[arg-type]
    rows = pl.concat(frames) if frames else _empty(C.ANNOTATION_SCHEMA)
    good, bad, superseded = validate_annotations(rows, photos["photo_id"], label_set)

    gold_rows = _read_oltp(context, oltp, "annotation_gold", list(C.GOLD_SCHEMA))
    gold = _empty(C.GOLD_SCHEMA) if gold_rows is None else gold_rows.cast(C.GOLD_SCHEMA)  # type: ignore[arg-type]
    gold_ok = gold.filter(
        pl.col("label").is_in(list(label_set))
        & pl.col("photo_id").is_in(photos["photo_id"].implode())
    ).unique("photo_id", keep="first", maintain_order=True)
    gold_bad = gold.join(gold_ok, on=["photo_id", "label"], how="anti").select(
        pl.lit(None, pl.String).alias("annotation_id"),
        "photo_id",
        pl.lit(None, pl.String).alias("annotator"),
        pl.col("label").str.slice(0, 200),
        pl.lit("gold").alias("source"),
        pl.lit(None, pl.String).alias("object_key"),
        pl.lit(None, pl.Int64).alias("task_index"),
        pl.lit("invalid_gold_item").alias("reason"),
        pl.lit("gold label outside the rulebook, unknown photo, or a second gold answer").alias(
            "detail"
        ),
    )
    quarantine = pl.concat(
        [bad, import_quarantine.cast(QUARANTINE_SCHEMA), gold_bad.cast(QUARANTINE_SCHEMA)]  # type: ignore[arg-type]
    )
    good = good.sort(["photo_id", "annotator", "annotation_id"])
    if quarantine.height:
        context.log.warning(
            "%d annotation rows quarantined: %s",
            quarantine.height,
            dict(quarantine["reason"].value_counts().iter_rows()),
        )
    reasons = quarantine.group_by("reason").len().sort("reason")
    yield dg.Output(
        good,
        output_name="annotations",
        metadata={
            **table_metadata(good),
            "by_source": dg.MetadataValue.json(
                dict(good["source"].value_counts().sort("source").iter_rows())
            ),
            "label_studio_files": files,
            "quarantined": quarantine.height,
            "superseded": superseded,
        },
    )
    yield dg.Output(
        gold_ok.sort("photo_id"), output_name="annotation_gold", metadata=table_metadata(gold_ok)
    )
    yield dg.Output(
        quarantine,
        output_name="annotations_quarantine",
        metadata={
            **table_metadata(quarantine),
            "reasons": dg.MetadataValue.md(markdown_preview(reasons, 50)),
        },
    )


CONSENSUS_SCHEMA = {
    "photo_id": pl.Int64,
    "label": pl.String,
    "confidence": pl.Float64,
    "n_annotations": pl.Int64,
    "agreement": pl.Float64,
    "method": pl.String,
}


def consensus_labels(
    annotations: pl.DataFrame, gold: pl.DataFrame, label_set: tuple[str, ...]
) -> tuple[pl.DataFrame, C.DawidSkene | None]:
    """One label per annotated photo (Dawid-Skene), with gold items' known answers taking
    precedence (``method = 'gold'``, confidence 1)."""
    latest = C.latest_per_annotator(annotations)
    if latest.height == 0:
        return _empty(CONSENSUS_SCHEMA), None
    ds = C.dawid_skene(latest, label_set)
    gold_labels = gold.join(
        ds.labels.select("photo_id", "n_annotations", "agreement"), on="photo_id", how="left"
    ).select(
        "photo_id",
        "label",
        pl.lit(1.0).alias("confidence"),
        pl.col("n_annotations").fill_null(0),
        "agreement",
        pl.lit("gold").alias("method"),
    )
    out = pl.concat(
        [
            ds.labels.join(gold.select("photo_id"), on="photo_id", how="anti").cast(
                CONSENSUS_SCHEMA
            ),  # type: ignore[arg-type]
            gold_labels.cast(CONSENSUS_SCHEMA),  # type: ignore[arg-type]
        ]
    ).sort("photo_id")
    return out, ds


@dg.asset(
    code_version="1",
    key=["labels", "image_content"],
    ins={
        "annotations": dg.AssetIn(["warehouse", "annotations"]),
        "annotation_gold": dg.AssetIn(["warehouse", "annotation_gold"]),
    },
    group_name=GROUP,
    kinds={"polars", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "consensus_accuracy_on_gold",
            asset=["labels", "image_content"],
            blocking=True,
            description=(
                f"Consensus labels are right on at least {CONSENSUS_ACCURACY_FLOOR} of gold "
                "items: blocks only when the one-sided 95% upper bound is below the floor."
            ),
        ),
        dg.AssetCheckSpec(
            "annotator_agreement",
            asset=["labels", "image_content"],
            description=f"Krippendorff's alpha is at least {AGREEMENT_FLOOR} (warns).",
        ),
    ],
)
def image_content(
    context: dg.AssetExecutionContext,
    annotations: pl.DataFrame,
    annotation_gold: pl.DataFrame,
    ground_truth: GroundTruthResource,
):
    """What each annotated photo shows, as one consensus label with a confidence.

    Dawid-Skene weighs each annotator by their estimated confusion matrix, so a careless
    annotator counts for little; gold items keep their known answer. Gold answers are not
    given to the EM, so the consensus's accuracy on gold is an honest check of the method.
    """
    label_set = image_content_rulebook().label_set
    annotations = annotations.cast(C.ANNOTATION_SCHEMA)  # type: ignore[arg-type]
    gold = annotation_gold.cast(C.GOLD_SCHEMA)  # type: ignore[arg-type]
    labels, ds = consensus_labels(annotations, gold, label_set)
    metadata: dict = {
        **table_metadata(labels),
        "rulebook_version": image_content_rulebook().version,
    }
    if ds is None:
        context.log.warning(
            "no annotations: image content labels are empty, and image content features "
            "will be null (see README, 'Use your own data')"
        )
        gold_judgement = judge_rate_floor(0, 0, CONSENSUS_ACCURACY_FLOOR)
        alpha, pairable = None, 0
    else:
        latest = C.latest_per_annotator(annotations)
        mv = C.majority_vote(latest, label_set)
        correct, n = C.accuracy_against(ds.labels, gold)
        mv_correct, _ = C.accuracy_against(mv, gold)
        gold_judgement = judge_rate_floor(correct, n, CONSENSUS_ACCURACY_FLOOR)
        alpha, pairable = C.krippendorff_alpha(latest)
        report = C.annotator_report(latest, ds.labels, gold)
        changed = ds.labels.join(mv.select("photo_id", pl.col("label").alias("mv")), on="photo_id")
        metadata |= {
            "annotations": annotations.height,
            "annotators": report.height,
            "gold_items": gold.height,
            "consensus_accuracy_on_gold": gold_judgement.estimate,
            "majority_vote_accuracy_on_gold": (mv_correct / n) if n else None,
            "krippendorff_alpha": alpha,
            "dawid_skene_iterations": ds.iterations,
            "dawid_skene_converged": ds.converged,
            "labels_differing_from_majority_vote": int((changed["label"] != changed["mv"]).sum()),
            "mean_confidence": float(labels["confidence"].mean() or 0.0),
            "annotator_table": dg.MetadataValue.md(
                markdown_preview(report.with_columns(pl.col(pl.Float64).round(3)), 100)
            ),
            "annotator_plot": png_metadata(
                C.annotator_png(report, CONSENSUS_ACCURACY_FLOOR), "annotators"
            ),
        }
        truth = _synthetic_truth(ground_truth)
        if truth is not None:
            t_ok, t_n = C.accuracy_against(ds.labels, truth)
            m_ok, _ = C.accuracy_against(mv, truth)
            metadata |= {
                "synthetic_only/consensus_accuracy_vs_truth": t_ok / t_n if t_n else None,
                "synthetic_only/majority_vote_accuracy_vs_truth": m_ok / t_n if t_n else None,
                "synthetic_only/photos_compared": t_n,
            }
    yield dg.Output(labels, metadata=metadata)
    yield judged_check(gold_judgement, "consensus_accuracy_on_gold")
    yield dg.AssetCheckResult(
        check_name="annotator_agreement",
        passed=alpha is not None and alpha >= AGREEMENT_FLOOR,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "krippendorff_alpha": None if alpha is None else round(alpha, 4),
            "pairable_values": pairable,
            "floor": AGREEMENT_FLOOR,
        },
    )


def _synthetic_truth(ground_truth: GroundTruthResource) -> pl.DataFrame | None:
    """The generator's true classes, for figures labelled synthetic-only; None on real data.
    Never used to compute a label."""
    truth = ground_truth.photos(columns=["photo_id", "image_class"])
    if truth is None:
        return None
    return truth.select("photo_id", pl.col("image_class").cast(pl.String).alias("label"))


__all__ = ["consensus_labels", "image_content", "validate_annotations", "warehouse_annotations"]
