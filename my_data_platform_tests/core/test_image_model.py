"""The image classifier: learns the synthetic classes, deterministically, and survives bad files."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from my_data_platform.core import image_model as im
from my_data_platform.synth.images import broken_payload, encode_jpeg, render_images
from my_data_platform.synth.population import CLASSES

pytestmark = pytest.mark.slow  # trains the image classifier on generated images


def _world_images(n: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """JPEG bytes and class labels drawn by the generator, balanced over the classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    pixels = render_images(rng, labels, rng.standard_normal(n))
    return [encode_jpeg(p) for p in pixels], labels


@pytest.fixture(scope="module")
def dataset() -> tuple[np.ndarray, np.ndarray]:
    jpegs, labels = _world_images(600, seed=7)
    images, ok = im.decode_batch(jpegs)
    assert ok.all()
    return images, labels


@pytest.fixture(scope="module")
def trained(dataset: tuple[np.ndarray, np.ndarray]) -> tuple[torch.nn.Module, dict]:
    images, labels = dataset
    return im.train_image_classifier(images, labels, seed=0, epochs=4, batch_size=32)


def test_classes_come_from_the_generator() -> None:
    assert im.CLASSES == CLASSES


def test_decode_batch_shapes_and_bad_inputs() -> None:
    jpegs, _ = _world_images(4, seed=1)
    png = _png(np.full((100, 80, 3), 200, np.uint8))
    datas = [
        jpegs[0],
        broken_payload(jpegs[1], "truncated", 2),
        broken_payload(jpegs[2], "not_an_image", 3),
        b"",
        png,
        None,
        jpegs[3],
    ]
    pixels, ok = im.decode_batch(datas, size=32)  # type: ignore[arg-type]
    assert pixels.shape == (7, 32, 32, 3) and pixels.dtype == np.uint8
    assert ok.tolist() == [True, False, False, False, True, False, True]
    assert not pixels[~ok].any()
    assert (np.abs(pixels[4].astype(int) - 200) <= 1).all()  # resized, other formats accepted
    empty, empty_ok = im.decode_batch([])
    assert empty.shape == (0, 64, 64, 3) and empty_ok.shape == (0,)


def _png(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_learns_the_synthetic_classes(trained: tuple[torch.nn.Module, dict]) -> None:
    _, metrics = trained
    assert metrics["test_accuracy"] >= 0.8
    assert metrics["val_accuracy"] >= 0.8
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (420, 120, 60)
    assert metrics["epochs"] == len(metrics["loss_curve"]) == 4
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    assert metrics["seconds"] > 0


def test_training_is_deterministic(dataset: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = dataset[0][:240], dataset[1][:240]
    threads = torch.get_num_threads()
    m1, k1 = im.train_image_classifier(images, labels, seed=3, epochs=2)
    m2, k2 = im.train_image_classifier(images, labels, seed=3, epochs=2)
    assert torch.get_num_threads() == threads  # process-wide settings are restored
    for (n1, t1), (n2, t2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert n1 == n2 and torch.equal(t1, t2), n1
    k1.pop("seconds"), k2.pop("seconds")
    assert k1 == k2
    m3, _ = im.train_image_classifier(images, labels, seed=4, epochs=2)
    assert not torch.equal(m1.head.weight, m3.head.weight)


def test_labels_may_be_class_names(dataset: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = dataset[0][:60], dataset[1][:60]
    names = np.asarray(CLASSES)[labels]
    _, by_index = im.train_image_classifier(images, labels, seed=1, epochs=1)
    _, by_name = im.train_image_classifier(images, names, seed=1, epochs=1)
    assert by_index["loss_curve"] == by_name["loss_curve"]
    with pytest.raises(ValueError):
        im.train_image_classifier(images, labels + len(CLASSES), epochs=1)


def test_predict_and_frame_with_undecodable_rows(trained: tuple[torch.nn.Module, dict]) -> None:
    model, _ = trained
    jpegs, labels = _world_images(12, seed=99)
    datas = [*jpegs, broken_payload(jpegs[0], "truncated", 1), b"placeholder text"]
    pixels, ok = im.decode_batch(datas)
    probs = im.predict(model, pixels, batch_size=5)
    assert probs.shape == (14, len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)

    frame = im.predictions_frame(np.arange(100, 114), probs, ok)
    assert frame.columns == [
        "photo_id",
        "predicted_class",
        "confidence",
        *[f"prob_{c}" for c in CLASSES],
    ]
    assert frame.schema["photo_id"] == pl.Int64
    assert frame["photo_id"].to_list() == list(range(100, 114))
    bad = frame.filter(pl.col("photo_id") >= 112)
    assert (
        bad.drop("photo_id").null_count().sum_horizontal().item() == bad.width - 1 + bad.width - 1
    )
    good = frame.head(12)
    assert good["predicted_class"].null_count() == 0
    expected = [CLASSES[i] for i in labels]
    assert np.mean(np.array(good["predicted_class"].to_list()) == np.array(expected)) >= 0.75
    np.testing.assert_allclose(good["confidence"].to_numpy(), probs[:12].max(axis=1))


def test_save_load_roundtrip(trained: tuple[torch.nn.Module, dict]) -> None:
    model, _ = trained
    pixels, _ = im.decode_batch(_world_images(20, seed=5)[0])
    restored = im.load_model(im.save_model(model))
    assert isinstance(restored, im.SmallCNN) and restored.classes == CLASSES
    np.testing.assert_array_equal(im.predict(restored, pixels), im.predict(model, pixels))
    with pytest.raises(Exception):  # noqa: B017 - any failure, as long as nothing loads
        im.load_model(b"not a model")


def test_pick_device() -> None:
    assert im.pick_device("cpu") == "cpu"
    assert im.pick_device() == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.gpu
def test_trains_on_cuda(dataset: tuple[np.ndarray, np.ndarray]) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device present")
    model, metrics = im.train_image_classifier(*dataset, seed=0, epochs=3, device="cuda")
    assert metrics["test_accuracy"] >= 0.8
    probs = im.predict(model, dataset[0][:10], device="cuda")
    assert probs.shape == (10, len(CLASSES))
