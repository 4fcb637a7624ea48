"""``mdp labels``: the Label Studio side of labelling: export the photos most worth labelling
next as LS tasks, with the labeling config to create the LS project from."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from my_data_platform.cli._common import console, err, fail, object_store, require_data_dir

if TYPE_CHECKING:
    import polars as pl

    from my_data_platform.settings import Settings

app = typer.Typer(help="Label Studio interchange: tasks to label next, and the labeling config.")

#: The lake feature table of per-photo labelling candidates (written by the consensus side).
CANDIDATES_FEATURE = "image_content_candidates"


def load_rulebook(settings: Settings) -> tuple[tuple[str, ...], dict[str, str]]:
    """The label set and each label's definition (a hint shown to annotators), from the
    annotators' rulebook shipped with the package."""
    from my_data_platform.core.rulebook import image_content_rulebook

    del settings
    rb = image_content_rulebook()
    return rb.label_set, {r.name: r.definition for r in rb.labels}


def load_candidates(settings: Settings) -> pl.DataFrame:
    """Per-photo candidates for labelling, with each photo's ``object_key``.

    Reads the lake feature ``image_content_candidates``, written by
    ``features/image_predictions`` (photo_id, predicted_class, confidence, agreement,
    n_annotations). Without
    it, every OLTP photo is a candidate: with the classifier's ``image_predictions`` where
    those exist, else with null confidence. Object keys come from the OLTP ``photos`` table.
    """
    import polars as pl

    from my_data_platform.core.objectstore import ObjectNotFoundError
    from my_data_platform.core.oltp import read_table
    from my_data_platform.defs.features.objects import feature_object, read_feature

    store = object_store()
    photos = read_table(settings.oltp_url, "photos", ["photo_id", "object_key"]).with_columns(
        pl.col("photo_id").cast(pl.Int64), pl.col("object_key").cast(pl.String)
    )

    def feature(name: str) -> pl.DataFrame | None:
        try:
            return read_feature(store, name)
        except ObjectNotFoundError:
            return None
        except (pl.exceptions.PolarsError, OSError) as exc:
            fail(f"cannot read {feature_object(name)}: {exc}")

    candidates = feature(CANDIDATES_FEATURE)
    if candidates is None:
        candidates = photos.select("photo_id")
        preds = feature("image_predictions")
        if preds is not None:
            candidates = candidates.join(
                preds.select("photo_id", "predicted_class", "confidence"),
                on="photo_id",
                how="left",
                maintain_order="left",
            )
    candidates = candidates.with_columns(pl.col("photo_id").cast(pl.Int64))
    if "object_key" in candidates.columns:
        return candidates
    return candidates.join(photos, on="photo_id", how="left", maintain_order="left")


@app.command("export")
def labels_export(
    out: Annotated[Path, typer.Option("--out", help="Where to write the LS tasks (JSON).")],
    limit: Annotated[int, typer.Option(min=1, help="How many photos to export.")] = 100,
    format: Annotated[str, typer.Option("--format", "-f", help="json (LS's import format)")] = (
        "json"
    ),
    config: Annotated[
        Path | None,
        typer.Option(help="Where to write the labeling config (default: beside --out)."),
    ] = None,
    image_prefix: Annotated[
        str | None,
        typer.Option(
            help="URL prefix LS loads images from, put before each object key (e.g. "
            "'/data/local-files/?d=lake/'); default: the object store's URI of the image."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Export the photos most worth labelling next (unlabelled, uncertain or disputed first)
    as Label Studio tasks with the classifier's guess as a pre-annotation, and the labeling
    config (XML) to set the LS project up with. Both files are written whole or not at all."""
    import polars as pl

    from my_data_platform.core import labelstudio as ls
    from my_data_platform.core.fsutil import atomic_write
    from my_data_platform.settings import get_settings

    if format != "json":
        fail(f"--format must be json, got {format!r}")
    config = config or out.with_name(f"{out.stem}.config.xml")
    if config.resolve() == out.resolve():
        fail(f"--config and --out are the same file: {out}")
    if not force:
        for path in (out, config):
            if path.exists():
                fail(f"{path} exists: pass --force to overwrite it")
    require_data_dir()
    settings = get_settings()
    labels, definitions = load_rulebook(settings)
    candidates = load_candidates(settings)
    unshowable = candidates.filter(pl.col("object_key").is_null())["photo_id"]
    if unshowable.len():
        shown = ", ".join(map(str, unshowable.sort().head(10).to_list()))
        err.print(f"{unshowable.len()} candidate photo(s) have no image and are left out: {shown}")
    candidates = candidates.filter(pl.col("object_key").is_not_null())
    try:
        picked = ls.select_for_labelling(candidates, limit)
    except ValueError as exc:
        fail(f"the labelling candidates are inconsistent: {exc}")
    rows = picked.join(
        candidates.drop("reason", "score", strict=False), on="photo_id", how="left",
        maintain_order="left",
    )  # fmt: skip
    store = object_store()
    tasks = ls.export_tasks(
        rows, image_url=image_prefix if image_prefix is not None else store.uri, label_set=labels
    )
    xml = ls.labeling_config(labels, definitions)
    with atomic_write(config, "w") as f:
        f.write(xml)
    with atomic_write(out, "w") as f:
        json.dump(tasks, f, indent=1, allow_nan=False)
        f.write("\n")
    why = ", ".join(f"{k} {v}" for k, v in sorted(Counter(picked["reason"]).items()))
    console.print(
        f"wrote {len(tasks)} task(s) to {out} ({why or 'no candidates'}) and the labeling "
        f"config to {config}",
        highlight=False,
        soft_wrap=True,
    )
