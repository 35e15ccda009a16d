import hashlib
import math

import pytest
import torch
from torch.utils.data import DataLoader

from accumbug.data import PRESETS, REGIONS, DataSpec, SyntheticImages, _uniform_rows, preset


@pytest.mark.parametrize("name, samples, classes, batches", [
    ("tiny", 1032, 64, 65), ("small", 13624, 712, 852), ("full", 136312, 7120, 8520),
])
def test_presets_match_the_design(name, samples, classes, batches):
    spec = PRESETS[name]
    assert (spec.samples, spec.classes, spec.batch_size) == (samples, classes, 16)
    assert spec.batches_per_epoch == batches and spec.last_batch_size == 8


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_an_epoch_walks_every_sample_once_in_batches(name):
    data = SyntheticImages(preset(name), seed=3)
    batches = list(data.batches(epoch=0))
    sizes = [len(labels) for _, labels, _ in batches]
    assert len(batches) == data.spec.batches_per_epoch and sizes[-1] == 8 and set(sizes[:-1]) == {16}
    ids = torch.cat([meta["sample_id"] for _, _, meta in batches])
    assert torch.equal(ids.sort().values, torch.arange(len(data)))
    images, labels, meta = batches[0]
    assert images.shape == (16, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(labels, data.labels[meta["sample_id"]])
    assert set(meta) == {"sample_id", "region", "month"}


def test_full_preset_classes_are_long_tailed_and_all_present():
    data = SyntheticImages(preset("full"))
    counts = torch.bincount(data.labels, minlength=7120)
    assert counts.min() >= 1 and counts.sum() == 136_312
    assert torch.equal(counts, data.class_counts)
    assert counts.max() / counts.min() > 20
    assert torch.all(data.class_counts[:-1] >= data.class_counts[1:])  # head first


def test_same_seed_same_bytes_other_seed_other_data():
    a, b, c = (SyntheticImages(preset("tiny"), seed=s) for s in (1, 1, 2))
    first = [next(iter(d.batches(0))) for d in (a, b, c)]
    assert torch.equal(first[0][0], first[1][0]) and torch.equal(first[0][1], first[1][1])
    assert not torch.equal(first[0][0], first[2][0])


def test_epochs_are_shuffled_differently():
    data = SyntheticImages(preset("tiny"))
    assert not torch.equal(data.epoch_order(0), data.epoch_order(1))
    assert torch.equal(data.epoch_order(0, shuffle=False), torch.arange(len(data)))


def test_map_style_view_matches_batch_generation():
    data = SyntheticImages(preset("tiny"), seed=5)
    view = data.view()
    images, labels, meta = data.samples(torch.tensor([0, 17, 1031]))
    for row, index in enumerate([0, 17, 1031]):
        image, label, sample_meta = view[index]
        assert torch.equal(image, images[row]) and label == labels[row]
        assert sample_meta["sample_id"] == index and sample_meta["month"] == meta["month"][row]
    loaded = next(iter(DataLoader(view, batch_size=16)))
    assert torch.equal(loaded[0], data.samples(torch.arange(16))[0])
    with pytest.raises(IndexError, match="index=1032: out of range"):
        view[1032]


def test_metadata_ranges():
    _, _, meta = SyntheticImages(preset("small")).samples(torch.arange(13624))
    assert set(meta["month"].unique().tolist()) == set(range(1, 13))
    assert set(meta["region"].unique().tolist()) == set(range(len(REGIONS)))


def test_images_are_standardised_noise_plus_a_faint_prototype():
    data = SyntheticImages(preset("small"))
    images, labels, _ = data.samples(torch.arange(4096))
    assert abs(images.mean().item()) < 0.01 and abs(images.std().item() - 1) < 0.02
    same_class = (images.flatten(1) @ data.class_means[labels].T).diagonal().mean()
    assert same_class > 20  # the prototype is there to learn, 768 * 0.25 / sqrt(1.0625) ~ 186 on average


def test_clusters_share_a_prototype_among_neighbours_in_frequency():
    spec = preset("tiny", clusters=8, cluster_signal=0.3, signal=0.1)
    data = SyntheticImages(spec)
    means = data.class_means
    same = (means[0] @ means[1:8].T).mean()  # classes 0-7: cluster 0
    other = (means[0] @ means[8:].T).abs().mean()
    assert same > 20 * other
    images, _, _ = data.samples(torch.arange(1032))
    assert abs(images.std().item() - 1) < 0.02  # still unit variance
    plain = SyntheticImages(preset("tiny"))
    assert torch.equal(plain.class_means, SyntheticImages(preset("tiny", clusters=8)).class_means)


@pytest.mark.parametrize("changes, message", [
    ({"batch_size": 0}, "batch_size=0: must be between 1 and samples=1032"),
    ({"batch_size": -4}, "batch_size=-4"),
    ({"batch_size": 2000}, "batch_size=2000"),
    ({"samples": 0}, "samples=0: the data set needs at least 1 sample"),
    ({"classes": 2000}, "classes=2000: more than samples=1032"),
    ({"signal": float("nan")}, "signal=nan"),
    ({"clusters": -1}, r"clusters=-1: must be between 0 \(none\) and classes=64"),
    ({"clusters": 65}, r"clusters=65: must be between 0 \(none\) and classes=64"),
    ({"clusters": 2.5}, "clusters=2.5: must be a whole number"),
    ({"cluster_signal": 0.1}, "cluster_signal=0.1: needs clusters >= 1"),
    ({"clusters": 4, "cluster_signal": float("inf")}, "cluster_signal=inf: must be a finite number >= 0"),
])
def test_bad_specs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        preset("tiny", **changes)


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset='huge': unknown; allowed: tiny, small, full"):
        preset("huge")


def test_dataspec_rejects_non_integers():
    with pytest.raises(ValueError, match="samples=10.5: must be a whole number"):
        DataSpec(samples=10.5, classes=2)


def splitmix64(value: int) -> int:
    """The reference splitmix64 mix in plain Python integers (unsigned 64-bit)."""
    mask = (1 << 64) - 1
    z = (value + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_noise_is_four_16_bit_lanes_of_splitmix64_low_bits_first():
    seed, stream, width, rows = 7, 2, 10, [0, 5, 136_311]
    key = splitmix64((seed << 4) | stream)
    words = math.ceil(width / 4)
    lanes = [[(splitmix64((row * words + pixel // 4) ^ key) >> (16 * (pixel % 4))) & 0xFFFF
              for pixel in range(width)] for row in rows]
    step = math.sqrt(12.0) / 65536
    expected = torch.tensor(lanes, dtype=torch.float32).mul_(step).add_(step * 0.5 - math.sqrt(3.0))
    assert torch.equal(_uniform_rows(seed, stream, torch.tensor(rows), width), expected)


def test_full_preset_bytes_are_those_of_the_reference_runs():
    """The data behind the recorded run (``accumbug/lessons/recorded/``) and the notebooks'
    figures: any change to the generator that alters one byte fails here (the digest was
    taken with the generator those runs used)."""
    data = SyntheticImages(preset("full"), seed=0)
    images, labels, meta = data.samples(torch.arange(0, 136_312, 997))
    digest = hashlib.sha256()
    for tensor in (data.class_means, images, labels, meta["sample_id"], meta["region"], meta["month"]):
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest() == "9ee694e06cded8fcdb07c83bf7f853e74780678c282ad8de9d7e4f5799de9cc7"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generation_on_cuda_gives_the_cpu_bytes():
    indices = torch.arange(0, 136_312, 997)
    on_cpu = SyntheticImages(preset("full"), seed=0).samples(indices)
    on_gpu = SyntheticImages(preset("full"), seed=0, device="cuda").samples(indices)
    assert torch.equal(on_gpu[0].cpu(), on_cpu[0]) and torch.equal(on_gpu[1].cpu(), on_cpu[1])
    assert all(torch.equal(on_gpu[2][key].cpu(), on_cpu[2][key]) for key in on_cpu[2])
