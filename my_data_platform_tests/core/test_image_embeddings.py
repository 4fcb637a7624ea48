"""Self-supervised image encoder and probe: deterministic, stored safely, robust to few labels."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

from my_data_platform.core import image_embeddings as ie
from my_data_platform.synth.images import render_images
from my_data_platform.synth.population import CLASSES

pytestmark = pytest.mark.slow  # trains small networks

N_IMAGES = 240
EPOCHS = 2


@pytest.fixture(scope="module")
def dataset() -> tuple[np.ndarray, np.ndarray]:
    """Generator photos (64 px) and their true class indices, balanced over the classes."""
    rng = np.random.default_rng(11)
    labels = np.arange(N_IMAGES) % len(CLASSES)
    rng.shuffle(labels)
    return render_images(rng, labels, rng.standard_normal(N_IMAGES)), labels


@pytest.fixture(scope="module")
def trained(dataset: tuple[np.ndarray, np.ndarray]) -> tuple[ie.ImageEncoder, dict]:
    images, _ = dataset
    return ie.train_encoder(images, seed=3, epochs=EPOCHS, batch_size=64)


@pytest.fixture(scope="module")
def embeddings(trained: tuple[ie.ImageEncoder, dict], dataset: tuple) -> np.ndarray:
    return ie.embed(trained[0], dataset[0])


def test_same_seed_same_weights_and_embeddings(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple, embeddings: np.ndarray
) -> None:
    images, _ = dataset
    again, metrics = ie.train_encoder(images, seed=3, epochs=EPOCHS, batch_size=64)
    assert ie.save_encoder(again) == ie.save_encoder(trained[0])
    assert ie.embed(again, images).tobytes() == embeddings.tobytes()
    assert metrics["loss_curve"] == trained[1]["loss_curve"]
    other, _ = ie.train_encoder(images, seed=4, epochs=EPOCHS, batch_size=64)
    assert ie.save_encoder(other) != ie.save_encoder(trained[0])


def test_training_metrics_and_the_loss_falls(trained: tuple[ie.ImageEncoder, dict]) -> None:
    _, m = trained
    assert m["n_images"] == N_IMAGES and m["epochs"] == EPOCHS == len(m["loss_curve"])
    assert m["dim"] == ie.DEFAULT_DIM and m["seconds"] > 0
    # NT-Xent of an untrained net is about ln(2 * batch - 1); training must get below it
    assert m["loss_curve"][-1] < m["loss_curve"][0] < np.log(2 * 64 - 1) + 0.5


def test_embeddings_shape_and_norm(embeddings: np.ndarray, trained: tuple) -> None:
    assert embeddings.shape == (N_IMAGES, ie.DEFAULT_DIM) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    # batching does not change the answer
    small = ie.embed(trained[0], np.zeros((0, 64, 64, 3), np.uint8))
    assert small.shape == (0, ie.DEFAULT_DIM)


def test_embedding_is_independent_of_batch_size(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple, embeddings: np.ndarray
) -> None:
    np.testing.assert_allclose(
        ie.embed(trained[0], dataset[0], batch_size=7), embeddings, atol=1e-6
    )


def test_encoder_round_trip(trained: tuple[ie.ImageEncoder, dict], dataset: tuple) -> None:
    blob = ie.save_encoder(trained[0])
    loaded = ie.load_encoder(blob)
    assert loaded.config == trained[0].config
    assert ie.save_encoder(loaded) == blob
    assert (
        ie.embed(loaded, dataset[0][:20]).tobytes()
        == ie.embed(trained[0], dataset[0][:20]).tobytes()
    )


def test_augment_is_seeded_and_keeps_range() -> None:
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a = ie.augment(x, torch.Generator().manual_seed(1))
    b = ie.augment(x, torch.Generator().manual_seed(1))
    c = ie.augment(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1


def test_probe_learns_the_classes(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple, embeddings: np.ndarray
) -> None:
    images, labels = dataset
    names = np.array(CLASSES)[labels]
    train, test = slice(0, 120), slice(120, None)
    probe, m = ie.train_probe(trained[0], images[train], names[train], CLASSES, seed=0, views=2)
    probs = ie.predict_probe(probe, embeddings[test])
    assert probs.shape == (N_IMAGES - 120, len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float((probs.argmax(axis=1) == labels[test]).mean())
    assert accuracy > 0.6  # chance is 1/6
    assert m["held_out_n"] == sum(m["held_out_class_counts"].values()) > 0
    assert 0 <= m["held_out_n_correct"] <= m["held_out_n"]
    assert m["held_out_accuracy"] == m["held_out_n_correct"] / m["held_out_n"]
    assert sum(m["class_counts"].values()) == 120 and m["n_train"] == 120


def test_probe_is_deterministic_and_round_trips(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple, embeddings: np.ndarray
) -> None:
    images, labels = dataset
    a, ma = ie.train_probe(trained[0], images[:60], labels[:60], CLASSES, seed=5)
    b, mb = ie.train_probe(trained[0], images[:60], labels[:60], CLASSES, seed=5)
    blob = ie.save_probe(a)
    assert blob == ie.save_probe(b)
    assert ma["held_out_n_correct"] == mb["held_out_n_correct"]
    loaded = ie.load_probe(blob)
    assert loaded.classes == tuple(CLASSES)
    np.testing.assert_array_equal(
        ie.predict_probe(loaded, embeddings), ie.predict_probe(a, embeddings)
    )


def test_label_set_is_a_parameter(trained: tuple[ie.ImageEncoder, dict], dataset: tuple) -> None:
    images, labels = dataset
    warm = np.where(np.isin(labels, [0, 2, 3]), "warm", "cool")  # sunset, food, pet
    probe, m = ie.train_probe(trained[0], images[:100], warm[:100], ["warm", "cool"], seed=0)
    assert probe.classes == ("warm", "cool")
    assert ie.predict_probe(probe, ie.embed(trained[0], images[:3])).shape == (3, 2)
    assert set(m["classes_present"]) == {"warm", "cool"}


@pytest.mark.parametrize(
    "labels",
    [
        ["sunset", "beach", "food", "pet", "city"],  # 5 labels, one class never seen
        ["sunset", "sunset", "sunset", "beach", "city"],  # classes with 1 example
        ["pet"] * 7,  # only one class present
        ["food"],  # a single label
    ],
)
def test_tiny_label_sets_train(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple, labels: list[str]
) -> None:
    images = dataset[0][: len(labels)]
    probe, m = ie.train_probe(trained[0], images, np.array(labels), CLASSES, seed=0)
    probs = ie.predict_probe(probe, ie.embed(trained[0], images))
    assert np.isfinite(probs).all() and probs.shape == (len(labels), len(CLASSES))
    assert m["classes_present"] == [c for c in CLASSES if c in labels]
    assert m["class_counts"]["portrait"] == 0 and m["n_usable"] == len(labels)
    if len(set(labels)) == 1:  # nothing to tell apart: predicts the one class it saw
        assert (probs.argmax(axis=1) == CLASSES.index(labels[0])).all()


def test_zero_labels_raise(trained: tuple[ie.ImageEncoder, dict], dataset: tuple) -> None:
    images = dataset[0]
    with pytest.raises(ValueError, match="no usable labels"):
        ie.train_probe(trained[0], images[:0], np.array([], dtype=str), CLASSES)
    with pytest.raises(ValueError, match="no usable labels"):  # every label outside the set
        ie.train_probe(trained[0], images[:2], np.array(["dog", "cat"]), CLASSES)
    with pytest.raises(ValueError, match="no usable labels"):  # every weight zero
        ie.train_probe(trained[0], images[:2], np.array([0, 1]), CLASSES, sample_weight=[0, 0])
    with pytest.raises(ValueError, match="one label per image"):
        ie.train_probe(trained[0], images[:3], np.array([0, 1]), CLASSES)


def test_unknown_and_zero_weight_labels_are_set_aside_and_counted(
    trained: tuple[ie.ImageEncoder, dict], dataset: tuple
) -> None:
    images, labels = dataset
    names = np.array(CLASSES)[labels[:40]]
    clean, _ = ie.train_probe(trained[0], images[:40], names, CLASSES, seed=1)
    # junk rows: wrong labels at weight 0, and labels outside the set
    junk_names = np.concatenate([names, np.array(CLASSES)[(labels[40:50] + 1) % 6], ["dog"] * 3])
    junk_images = np.concatenate([images[:40], images[40:50], images[50:53]])
    weight = np.concatenate([np.ones(40), np.zeros(10), np.ones(3)])
    noisy, m = ie.train_probe(
        trained[0], junk_images, junk_names, CLASSES, seed=1, sample_weight=weight
    )
    assert ie.save_probe(noisy) == ie.save_probe(clean)  # the set-aside rows had no effect
    assert m["unknown_labels"] == {"dog": 3} and m["n_zero_weight"] == 10 and m["n_usable"] == 40
    with pytest.raises(ValueError, match="sample_weight"):
        ie.train_probe(trained[0], images[:2], np.array([0, 1]), CLASSES, sample_weight=[1, -1])
    with pytest.raises(ValueError, match="sample_weight"):
        ie.train_probe(trained[0], images[:2], np.array([0, 1]), CLASSES, sample_weight=[1, np.nan])


def test_weights_shift_the_probe(trained: tuple[ie.ImageEncoder, dict], dataset: tuple) -> None:
    """A confident label counts more than a doubtful one."""
    images = dataset[0]
    img = np.concatenate([images[:1], images[:1]])
    lab = np.array(["city", "beach"])
    z = ie.embed(trained[0], img[:1])
    for weight, winner in (([0.9, 0.1], "city"), ([0.1, 0.9], "beach")):
        probe, _ = ie.train_probe(
            trained[0], img, lab, CLASSES, views=0, sample_weight=np.array(weight)
        )
        assert CLASSES[int(ie.predict_probe(probe, z).argmax())] == winner


class _Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_corrupt_blobs_are_refused(trained: tuple[ie.ImageEncoder, dict]) -> None:
    good = ie.save_encoder(trained[0])
    buf = io.BytesIO()
    torch.save({"kind": "image encoder", "format_version": 1, "config": _Exploit()}, buf)
    blobs = {}
    for kind in ("image encoder", "image probe"):
        wrong = io.BytesIO()
        torch.save({"kind": kind, "format_version": 99, "config": {}, "state_dict": {}}, wrong)
        blobs[kind] = wrong.getvalue()
    list_blob = io.BytesIO()
    torch.save([1, 2], list_blob)
    for bad in (good[: len(good) // 2], b"", b"not a model", buf.getvalue(), list_blob.getvalue()):
        with pytest.raises(ValueError, match="not a stored"):
            ie.load_encoder(bad)
        with pytest.raises(ValueError, match="not a stored"):
            ie.load_probe(bad)
    with pytest.raises(ValueError, match="unsupported image encoder format 99"):
        ie.load_encoder(blobs["image encoder"])
    with pytest.raises(ValueError, match="unsupported image probe format 99"):
        ie.load_probe(blobs["image probe"])
    with pytest.raises(ValueError, match="not a stored image probe"):  # an encoder is no probe
        ie.load_probe(good)
    with pytest.raises(TypeError):
        ie.save_encoder(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_bad_inputs(trained: tuple[ie.ImageEncoder, dict]) -> None:
    with pytest.raises(ValueError, match="at least 2 images"):
        ie.train_encoder(np.zeros((1, 16, 16, 3), np.uint8), epochs=1)
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\)"):
        ie.embed(trained[0], np.zeros((2, 16, 16), np.uint8))
