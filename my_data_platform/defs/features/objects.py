"""The feature tables as lake objects: where each lives, and the classifier outputs joined from
them. Shared by the assets, the checks, the dataset asset and ``mdp features get``."""

import polars as pl

from my_data_platform.core.objectstore import ObjectStore


def feature_object(name: str) -> str:
    """The lake object of feature table ``name``."""
    return f"lake/features/{name}.parquet"


def read_feature(store: ObjectStore, name: str) -> pl.DataFrame:
    return pl.read_parquet(store.get_bytes(feature_object(name)))


def classifier_outputs(store: ObjectStore) -> pl.DataFrame:
    """The per-photo classifier outputs joined into examples (online and offline alike)."""
    preds = read_feature(store, "image_predictions")
    emb = read_feature(store, "caption_embeddings")
    return preds.join(
        emb.select("photo_id", pl.col("embedding").alias("caption_embedding")),
        on="photo_id",
        how="full",
        coalesce=True,
    )
