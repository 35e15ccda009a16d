"""The incident-shaped synthetic data set: images, labels and metadata, generated in whole batches.

The incident trained on 136,312 samples of 7,120 classes at batch size 16. No such data
set can be downloaded here, so this module makes one that has the same shape and behaves
the same way in training: every sample is a 3x16x16 image, a label from a long-tailed
class distribution in which every class is present, and metadata (``sample_id``, ``region``,
``month``). Images are a faint class prototype under strong noise, so a small model learns
slowly, as in the incident's console log (``01_side_by_side_small.ipynb`` and
``02_side_by_side_full_136k.ipynb`` train on it).

Every number is a pure function of ``(seed, index)``: a counter-based hash (splitmix64)
turns the sample index and pixel position into noise, so any set of indices -- a shuffled
batch, a ``DistributedSampler`` shard, one sample from the map-style view -- is generated in
one vectorised call, on any device, and gives the same values.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, replace

import torch

from .validation import check_choice, check_real, check_whole

__all__ = [
    "PRESETS",
    "REGIONS",
    "DataSpec",
    "EpochBatches",
    "SampleView",
    "SyntheticImages",
    "preset",
]

REGIONS = ("north", "south", "east", "west", "central")

if sys.byteorder != "little":
    raise ImportError("accumbug.data reads each 64-bit hash as four 16-bit values in little-endian order; "
                      f"this machine is {sys.byteorder}-endian")

# splitmix64 constants, written as the signed int64 values torch stores.
_WORD = 1 << 64


def _signed(value: int) -> int:
    return value - _WORD if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)

# Independent hash streams, so prototypes, noise and metadata never share counters.
_STREAM_PROTOTYPE, _STREAM_NOISE, _STREAM_META, _STREAM_CLUSTER = 1, 2, 3, 4


def _shift_right(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` is arithmetic)."""
    return (z >> bits).bitwise_and_((1 << (64 - bits)) - 1)


def _splitmix64_(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's mix of every value of ``z``, in place: no fresh 400 KB tensor per operation."""
    z.add_(_GOLDEN)
    z.bitwise_xor_(_shift_right(z, 30)).mul_(_MIX1)
    z.bitwise_xor_(_shift_right(z, 27)).mul_(_MIX2)
    return z.bitwise_xor_(_shift_right(z, 31))


@functools.cache
def _stream_key(seed: int, stream: int) -> int:
    """The hash key of one ``(seed, stream)``, mixed once and kept as a Python int."""
    return int(_splitmix64_(torch.tensor((seed << 4) | stream, dtype=torch.int64)))


def _hash(seed: int, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """64 pseudo-random bits per counter, a pure function of (seed, stream, counter)."""
    return _splitmix64_(counters ^ _stream_key(seed, stream))


_LANES = 4  # 16-bit noise values per 64-bit hash


def _uniform_rows(seed: int, stream: int, rows: torch.Tensor, width: int, scale: float = 1.0) -> torch.Tensor:
    """``[len(rows), width]`` float32 noise, uniform with mean 0 and variance ``scale**2``.

    Row ``r``'s values are a pure function of ``(seed, stream, r)``: each 64-bit hash of
    ``(r, word)`` gives four 16-bit values, bits 0-15 first, so one hash serves four pixels.
    Read as ``uint16`` in memory order, which is that order on a little-endian machine.
    """
    words = -(-width // _LANES)
    counters = rows[:, None] * words + torch.arange(words, device=rows.device)
    lanes = _hash(seed, stream, counters).view(torch.uint16)
    step = scale * math.sqrt(12.0) / 65536  # 65,536 levels spanning a unit-variance uniform
    noise = lanes[:, :width].to(torch.float32)
    return noise.mul_(step).add_(step * 0.5 - scale * math.sqrt(3.0))


@dataclass(frozen=True)
class DataSpec:
    """The size and difficulty of a synthetic data set.

    ``signal`` is the class prototype's amplitude against unit noise; ``tail`` the exponent of
    the Zipf-like class frequencies (0 = balanced). ``clusters`` groups the classes, in order of
    frequency, into that many clusters of neighbours whose images share a cluster prototype of
    amplitude ``cluster_signal`` (0 = no clusters): a model finds a sample's cluster before its
    class, so top-5 rises before top-1. Every preset leaves a partial last batch.
    """

    samples: int
    classes: int
    batch_size: int = 16
    image_shape: tuple[int, int, int] = (3, 16, 16)
    signal: float = 0.25
    tail: float = 0.5
    clusters: int = 0
    cluster_signal: float = 0.0

    def __post_init__(self) -> None:
        for field in ("samples", "classes", "batch_size", "clusters"):  # NumPy integers kept as Python ints
            object.__setattr__(self, field, check_whole(field, getattr(self, field)))
        if self.samples < 1:
            raise ValueError(f"samples={self.samples}: the data set needs at least 1 sample")
        if self.classes < 1:
            raise ValueError(f"classes={self.classes}: needs at least 1 class")
        if self.classes > self.samples:
            raise ValueError(
                f"classes={self.classes}: more than samples={self.samples}; "
                "every class must have at least one sample"
            )
        if not 1 <= self.batch_size <= self.samples:
            raise ValueError(
                f"batch_size={self.batch_size}: must be between 1 and samples={self.samples}"
            )
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape={self.image_shape!r}: must be (channels, height, width) >= 1")
        for field in ("signal", "tail", "cluster_signal"):
            object.__setattr__(self, field, check_real(field, getattr(self, field), 0))
        if not 0 <= self.clusters <= self.classes:
            raise ValueError(f"clusters={self.clusters}: must be between 0 (none) and classes={self.classes}")
        if self.cluster_signal > 0 and self.clusters == 0:
            raise ValueError(f"cluster_signal={self.cluster_signal}: needs clusters >= 1")

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.samples // self.batch_size)

    @property
    def last_batch_size(self) -> int:
        return self.samples - (self.batches_per_epoch - 1) * self.batch_size

    @property
    def pixels(self) -> int:
        return math.prod(self.image_shape)


PRESETS: dict[str, DataSpec] = {
    "tiny": DataSpec(samples=1_032, classes=64),
    "small": DataSpec(samples=13_624, classes=712),
    "full": DataSpec(samples=136_312, classes=7_120, signal=0.05, tail=0.8, clusters=356, cluster_signal=0.18),
}


def preset(name: str, **changes) -> DataSpec:
    """The preset called ``name`` (``tiny``, ``small`` or ``full``), with optional changes."""
    check_choice("preset", name, PRESETS)
    return replace(PRESETS[name], **changes) if changes else PRESETS[name]


def _class_counts(samples: int, classes: int, tail: float) -> torch.Tensor:
    """Long-tailed counts: one sample per class, the rest shared in proportion to 1/rank**tail."""
    weights = torch.arange(1, classes + 1, dtype=torch.float64).pow(-tail)
    spare = samples - classes
    shares = torch.floor(weights / weights.sum() * spare).to(torch.int64)
    shares[: spare - int(shares.sum())] += 1  # the rounding remainder goes to the head classes
    return shares + 1


def _class_means(spec: DataSpec, seed: int, device: torch.device) -> torch.Tensor:
    """Each class's mean image: its own prototype, plus its cluster's when there are clusters.

    Scaled so that the images (noise plus mean) keep unit variance.
    """
    norm = 1.0 / math.sqrt(1.0 + spec.signal**2 + spec.cluster_signal**2)
    classes = torch.arange(spec.classes, device=device)
    means = _uniform_rows(seed, _STREAM_PROTOTYPE, classes, spec.pixels).mul_(spec.signal * norm)
    if spec.clusters:
        cluster = classes * spec.clusters // spec.classes  # neighbours in frequency share a cluster
        shared = _uniform_rows(seed, _STREAM_CLUSTER, torch.arange(spec.clusters, device=device), spec.pixels)
        means.add_(shared.index_select(0, cluster), alpha=spec.cluster_signal * norm)
    return means


class SyntheticImages:
    """A deterministic, incident-shaped classification data set (see the module docstring).

    ``samples(indices)`` generates any set of samples in one call; ``batches(epoch)`` walks an
    epoch in (shuffled) batches as the incident's ``train_loader`` did; ``view()`` is the
    map-style ``Dataset`` for ``DataLoader`` and ``DistributedSampler``.
    """

    def __init__(self, spec: DataSpec, seed: int = 0, device: str | torch.device = "cpu"):
        self.spec = spec
        self.seed = int(seed)
        self.device = torch.device(device)
        counts = _class_counts(spec.samples, spec.classes, spec.tail)
        order = torch.Generator().manual_seed(self.seed)
        sorted_labels = torch.repeat_interleave(torch.arange(spec.classes), counts)
        self.labels = sorted_labels[torch.randperm(spec.samples, generator=order)].to(self.device)
        self.class_counts = counts
        self.class_means = _class_means(spec, self.seed, self.device)
        self._noise_scale = 1.0 / math.sqrt(1.0 + spec.signal**2 + spec.cluster_signal**2)

    def __len__(self) -> int:
        return self.spec.samples

    def samples(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Images ``[n, C, H, W]``, labels ``[n]`` and metadata for the given sample indices."""
        indices = indices.to(self.device, torch.int64)
        labels = self.labels[indices]
        images = _uniform_rows(self.seed, _STREAM_NOISE, indices, self.spec.pixels, self._noise_scale)
        images = images.add_(self.class_means.index_select(0, labels)).view(-1, *self.spec.image_shape)
        meta_bits = _hash(self.seed, _STREAM_META, indices)
        metadata = {
            "sample_id": indices,
            "region": _shift_right(meta_bits, 40) % len(REGIONS),
            "month": _shift_right(meta_bits, 20) % 12 + 1,
        }
        return images, labels, metadata

    def epoch_order(self, epoch: int, shuffle: bool = True) -> torch.Tensor:
        """The sample order of ``epoch`` (0-based): a permutation seeded by (seed, epoch)."""
        if not shuffle:
            return torch.arange(self.spec.samples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.spec.samples, generator=generator)

    def batches(self, epoch: int = 0, shuffle: bool = True) -> EpochBatches:
        return EpochBatches(self, self.epoch_order(epoch, shuffle))

    def view(self) -> SampleView:
        return SampleView(self)


class EpochBatches:
    """One epoch of batches over a given sample order; ``len()`` is the batch count.

    Samples are generated a block of batches at a time (one vectorised call per block) and
    handed out batch by batch, so the per-batch cost is a slice, not 16 ``__getitem__`` calls.
    With ``counted`` (one bool per entry of ``order``, on the CPU) every batch's metadata also
    carries its slice as ``counted``: which rows a rank counts (``distributed.py``).
    """

    BLOCK_BATCHES = 16  # 256 samples: large enough to amortise the calls, small enough to stay in cache

    def __init__(self, data: SyntheticImages, order: torch.Tensor, counted: torch.Tensor | None = None):
        if counted is not None and counted.shape != order.shape:
            raise ValueError(f"counted shape {tuple(counted.shape)}: expected {tuple(order.shape)}, one per sample")
        self.data = data
        self.order = order
        self.counted = counted

    def __len__(self) -> int:
        size = self.data.spec.batch_size
        return (len(self.order) + size - 1) // size

    def __iter__(self):
        size = self.data.spec.batch_size
        block = size * self.BLOCK_BATCHES
        for start in range(0, len(self.order), block):
            images, labels, metadata = self.data.samples(self.order[start : start + block])
            if self.counted is not None:
                metadata["counted"] = self.counted[start : start + block]
            for offset in range(0, len(labels), size):
                cut = slice(offset, offset + size)
                yield images[cut], labels[cut], {key: value[cut] for key, value in metadata.items()}


class SampleView(torch.utils.data.Dataset):
    """Map-style view, one sample per ``__getitem__``: for ``DataLoader`` and samplers.

    It returns exactly what ``SyntheticImages.samples`` gives for that index; it is the naive
    per-sample path that ``benchmarks/bench_epoch.py`` compares the batch path against.
    """

    def __init__(self, data: SyntheticImages):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"index={index}: out of range for {len(self)} samples")
        images, labels, metadata = self.data.samples(torch.tensor([index % len(self)]))
        return images[0], labels[0], {key: value[0] for key, value in metadata.items()}
