"""Neuroevolution on scikit-learn's digits: an MLP classifier whose weights are the genome.

The data set is scikit-learn's bundled ``digits`` (1,797 8x8 images of handwritten digits,
pixels 0..16, 10 classes; a copy of the test set of UCI's "Optical Recognition of Handwritten
Digits", E. Alpaydin and C. Kaynak, CC BY 4.0), vendored as ``data/digits.csv.gz`` (57 KB,
sha256 checked on load) so that every worker of a run evaluates the same bytes with no
scikit-learn installed (docs/design.md, "Neuroevolution problems").

The split is fixed, stratified and needs no random numbers: of each class's images in file
order, every fifth (the 5th, 10th, ...) is held out as the test split (355 images), the rest
are the training split (1,442). Pixels are scaled to [0, 1].

A genome of D = (64 + 1) h + (h + 1) 10 weights is, in order, W1 [64, h], b1 [h],
W2 [h, 10], b2 [10] of ``logits = tanh(x W1 + b1) W2 + b2``. Fitness is the mean
cross-entropy over the whole training split, minimised, for a whole population at once
(batched matmuls over [B, N, h]; no Python loop over individuals).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from islandsync.config.problems import DIGITS_CLASSES, DIGITS_INPUTS, mlp_weights
from islandsync.errors import ConfigError

DIGITS_FILE = Path(__file__).parent / "data" / "digits.csv.gz"
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
DIGITS_ROWS = 1797
TEST_EVERY = 5  # every fifth image is held out
# Hidden activations of at most this many values at once (256 MB in float64): a population
# larger than that is evaluated in slices of rows, each still one batched matmul.
_MAX_ACTIVATIONS = 1 << 25


@dataclass(frozen=True)
class Digits:
    """The digits split: ``*_x`` [N, 64] pixels in [0, 1] (float64), ``*_y`` [N] labels."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


@functools.lru_cache(maxsize=1)
def load_digits() -> Digits:
    """The vendored digits data set, split (see the module docstring).

    Raises:
        ConfigError: the data file is missing or not the one shipped (a broken install).
    """
    try:
        raw = DIGITS_FILE.read_bytes()
    except OSError as e:
        raise ConfigError(f"digits: cannot read {DIGITS_FILE} ({e}); reinstall islandsync") \
            from e
    if hashlib.sha256(raw).hexdigest() != DIGITS_SHA256:
        raise ConfigError(f"digits: {DIGITS_FILE} is not the file islandsync ships "
                          "(sha256 differs); reinstall islandsync")
    table = np.loadtxt(gzip.decompress(raw).decode("ascii").splitlines(), delimiter=",")
    x = torch.from_numpy(table[:, :DIGITS_INPUTS] / 16.0)
    y = torch.from_numpy(table[:, DIGITS_INPUTS].astype(np.int64))
    # Each image's place among the images of its class (0, 1, 2, ... in file order).
    place = (torch.nn.functional.one_hot(y).cumsum(0) - 1).gather(1, y[:, None])[:, 0]
    test = place % TEST_EVERY == TEST_EVERY - 1
    return Digits(x[~test], y[~test], x[test], y[test])


def mlp_forward(genomes: Tensor, x: Tensor, inputs: int, hidden: int, outputs: int) -> Tensor:
    """Outputs ``[B, N, outputs]`` of the MLPs ``genomes [B, D]`` (layout in the module
    docstring; ``hidden`` 0: one linear layer) on ``x``: ``[N, inputs]`` shared by all, or
    ``[B, N, inputs]``, one batch per genome."""
    b, d = genomes.shape
    if d != mlp_weights(inputs, hidden, outputs):
        raise ConfigError(f"MLP {inputs}-{hidden}-{outputs} has "
                          f"{mlp_weights(inputs, hidden, outputs)} weights; genomes have {d}")
    x = x.to(genomes.dtype)
    layers = [(inputs, hidden), (hidden, outputs)] if hidden else [(inputs, outputs)]
    at = 0
    for j, (fan_in, fan_out) in enumerate(layers):
        w = genomes[:, at:at + fan_in * fan_out].reshape(b, fan_in, fan_out)
        at += fan_in * fan_out
        bias = genomes[:, at:at + fan_out]
        at += fan_out
        x = torch.baddbmm(bias[:, None, :], x.expand(b, *x.shape[-2:]), w)
        if j + 1 < len(layers):
            x = torch.tanh(x)
    return x


def _split(split: str, genomes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The split's images and labels on the genomes' device, and the genomes in a float
    dtype (their own where they have one)."""
    if split not in ("train", "test"):
        raise ConfigError(f"digits: split must be 'train' or 'test', got {split!r}")
    data = load_digits()
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    genomes = genomes if genomes.is_floating_point() else genomes.to(torch.float32)
    return x.to(device=genomes.device, dtype=genomes.dtype), y.to(genomes.device), genomes


def _in_slices(genomes: Tensor, rows: int, hidden: int,
               fn: Callable[[Tensor], Tensor]) -> Tensor:
    # Slices of the population only where one pass would hold too many activations.
    per = max(1, _MAX_ACTIVATIONS // max(1, rows * max(hidden, DIGITS_CLASSES)))
    if genomes.shape[0] <= per:
        return fn(genomes)
    return torch.cat([fn(part) for part in genomes.split(per)])


def digits_cross_entropy(genomes: Tensor, hidden: int, split: str = "train") -> Tensor:
    """Mean cross-entropy [B] of each genome's MLP on the ``split`` ("train" or "test")."""
    x, y, genomes = _split(split, genomes)

    def loss(part: Tensor) -> Tensor:
        logits = mlp_forward(part, x, DIGITS_INPUTS, hidden, DIGITS_CLASSES)
        logp = torch.log_softmax(logits, dim=-1)
        return -logp.gather(2, y[None, :, None].expand(part.shape[0], -1, 1))[..., 0].mean(1)

    return _in_slices(genomes, x.shape[0], hidden, loss)


def digits_accuracy(genomes: Tensor, hidden: int, split: str = "test") -> Tensor:
    """Fraction [B] of the ``split``'s images ("test" or "train") each genome's MLP classifies
    right (its largest logit is the label)."""
    x, y, genomes = _split(split, genomes)

    def right(part: Tensor) -> Tensor:
        logits = mlp_forward(part, x, DIGITS_INPUTS, hidden, DIGITS_CLASSES)
        return (logits.argmax(-1) == y[None, :]).to(torch.float64).mean(1)

    return _in_slices(genomes, x.shape[0], hidden, right)


def digits_fitness(hidden: int) -> Callable[[Tensor], Tensor]:
    """The digits problem's ``evaluate``: training cross-entropy of each genome."""
    def evaluate(genomes: Tensor) -> Tensor:
        return digits_cross_entropy(genomes, hidden, "train")
    return evaluate


__all__ = ["DIGITS_FILE", "DIGITS_ROWS", "Digits", "digits_accuracy", "digits_cross_entropy",
           "digits_fitness", "load_digits", "mlp_forward"]
