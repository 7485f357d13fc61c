"""Kim's sentence CNN (Kim, 2014, "Convolutional Neural Networks for Sentence
Classification"): word vectors -> 1-D convolutions of several widths -> max over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.models.base import Classifier, check_num_classes, traced
from cnnlab.models.registry import register_model

MODES = ("rand", "static", "non-static", "multichannel")
# Kim: random word vectors ~ U(-0.25, 0.25), word2vec's variance (as cnnlab.data.text)
EMBEDDING_INIT = 0.25


class NgramFeatures(nn.Module):
    """Token ids (B, L) -> one max-pooled feature per filter (B, len(filter_sizes) * num_filters).

    ``embedding`` is the trained table; in multichannel mode ``static_embedding`` is a
    frozen copy. Kim applies each filter to both channels and adds the results before the
    bias and ReLU; by linearity that is the convolution of the sum of the two channels,
    which is what :meth:`_embed` returns (one Conv1d call instead of two).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        filter_sizes: tuple[int, ...],
        num_filters: int,
        mode: str,
        padding_idx: int,
    ) -> None:
        super().__init__()
        self.padding_idx = padding_idx
        self.min_length = max(filter_sizes)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.static_embedding: nn.Embedding | None = None
        if mode == "multichannel":
            self.static_embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, w) for w in filter_sizes)
        with torch.no_grad():
            self.embedding.weight.uniform_(-EMBEDDING_INIT, EMBEDDING_INIT)
            self.embedding.weight[padding_idx] = 0.0
            if self.static_embedding is not None:
                self.static_embedding.weight.copy_(self.embedding.weight)
        if mode == "static":
            self.embedding.weight.requires_grad_(False)
        if self.static_embedding is not None:
            self.static_embedding.weight.requires_grad_(False)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        # Shorter than the widest filter: right-pad with padding_idx, whose vector is 0.
        if x.shape[1] < self.min_length:
            x = F.pad(x, (0, self.min_length - x.shape[1]), value=self.padding_idx)
        e = self.embedding(x)  # (B, L, D)
        if self.static_embedding is not None:
            e = e + self.static_embedding(x)
        return e.transpose(1, 2)  # (B, D, L): Conv1d slides over the words

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per filter width, the ReLU feature maps (B, num_filters, L - w + 1)."""
        e = self._embed(x)
        return [F.relu(conv(e)) for conv in self.convs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [m.amax(dim=2) for m in self.feature_maps(x)]  # each (B, num_filters)
        return torch.cat(pooled, dim=1)


class KimCNN(Classifier):
    """Kim's CNN: embed -> Conv1d per width + ReLU -> max over time -> dropout -> linear.

    Modes (Kim, section 3.1): "rand" learns word vectors from U(-0.25, 0.25); "static"
    keeps loaded vectors fixed; "non-static" fine-tunes them; "multichannel" has a fixed
    and a fine-tuned copy (see :class:`NgramFeatures`). Load pre-trained vectors with
    :meth:`load_embeddings` after building.

    Inputs shorter than the widest filter are right-padded with ``padding_idx`` inside
    the model, so every width has at least one window.

    Kim's max-norm constraint rescales each row of the output weight to L2 norm
    ``max_norm`` whenever it exceeds it after a gradient step. cnnlab's trainer has no
    per-step model hook, so :meth:`forward_head` applies it, in place and without
    gradient, before using the weight: every forward sees exactly the clamped weight that
    clamping after each step would leave (rows within the norm are not touched).

    Args:
        vocab_size: rows of the embedding table (``len(vocab)``).
        num_classes: outputs.
        embed_dim: word vector length (300 for word2vec).
        filter_sizes: window widths, in words.
        num_filters: feature maps per width.
        dropout: drop probability on the pooled features.
        max_norm: the L2 bound on each output weight row; None: no constraint.
        mode: "rand", "static", "non-static" or "multichannel".
        padding_idx: the id of ``<pad>``; its vector stays zero.
        in_channels: must be 1 (one sequence of token ids); for two embedding channels
            use ``mode="multichannel"``. Accepted for the Classifier contract.
    """

    input_dtype = torch.int64
    features: NgramFeatures

    def __init__(
        self,
        vocab_size: int = 20000,
        num_classes: int = 2,
        embed_dim: int = 300,
        filter_sizes: Sequence[int] = (3, 4, 5),
        num_filters: int = 100,
        dropout: float = 0.5,
        max_norm: float | None = 3.0,
        mode: str = "rand",
        padding_idx: int = 0,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        filter_sizes = tuple(filter_sizes)
        _check_sizes(vocab_size, embed_dim, filter_sizes, num_filters, dropout, max_norm)
        _check_mode(mode, padding_idx, vocab_size, in_channels)
        check_num_classes(num_classes)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.vocab_size, self.embed_dim, self.mode = vocab_size, embed_dim, mode
        self.filter_sizes, self.num_filters = filter_sizes, num_filters
        self.dropout, self.max_norm, self.padding_idx = dropout, max_norm, padding_idx
        self.features = NgramFeatures(
            vocab_size, embed_dim, filter_sizes, num_filters, mode, padding_idx
        )
        self.head = self._make_head(num_classes)

    def _make_head(self, num_classes: int) -> nn.Module:
        in_features = len(self.filter_sizes) * self.num_filters
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(in_features, num_classes))

    @property
    def classifier(self) -> nn.Linear:
        """The output layer (its weight rows are max-norm constrained)."""
        linear = list(self.head.modules())[-1]  # head: Dropout, Linear
        assert isinstance(linear, nn.Linear)
        return linear

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.dtype not in (torch.int64, torch.int32):
            raise ShapeMismatchError(
                f"KimCNN expects integer token ids (B, L), received a "
                f"{x.dtype} tensor of shape {tuple(x.shape)}"
            )
        if traced():  # the range check reads the data: eager calls only
            return
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.vocab_size):
            raise ConfigError(
                f"KimCNN built with vocab_size={self.vocab_size} expects ids in "
                f"[0, {self.vocab_size}), received ids from {int(x.min())} to {int(x.max())}; "
                "build it with vocab_size=len(vocab)"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> max-pooled features (B, len(filter_sizes) * num_filters)."""
        self.check_input(x)
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features -> dropout -> linear -> logits (B, num_classes)."""
        self.apply_max_norm()
        return self.head(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Before pooling: per width w, the ReLU maps (B, num_filters, L - w + 1), L after
        the short-input padding."""
        self.check_input(x)
        return self.features.feature_maps(x)

    @torch.no_grad()
    def apply_max_norm(self) -> None:
        """Rescale the output weight rows whose L2 norm exceeds ``max_norm`` to ``max_norm``."""
        if self.max_norm is None or traced():
            return  # traced graphs (export, compile) keep the weights they were given
        weight = self.classifier.weight
        norms = weight.norm(dim=1, keepdim=True)  # (num_classes, 1)
        if bool((norms > self.max_norm).any()):  # an untouched weight keeps its autograd version
            weight.mul_((self.max_norm / norms).clamp(max=1.0))

    @torch.no_grad()
    def load_embeddings(self, matrix: torch.Tensor) -> None:
        """Copy pre-trained vectors (vocab_size, embed_dim) into the embedding table(s).

        Both channels in multichannel mode; the ``padding_idx`` row is set to zero. Which
        tables train is fixed by ``mode`` (static: none; multichannel: one).
        """
        expected = (self.vocab_size, self.embed_dim)
        if tuple(matrix.shape) != expected:
            raise ShapeMismatchError(
                f"KimCNN expects an embedding matrix of shape {expected} (vocab_size, "
                f"embed_dim), received {tuple(matrix.shape)}"
            )
        tables = [self.features.embedding, self.features.static_embedding]
        for table in tables:
            if table is not None:
                table.weight.copy_(matrix)
                table.weight[self.padding_idx] = 0.0


def _check_sizes(
    vocab_size: int,
    embed_dim: int,
    filter_sizes: tuple[int, ...],
    num_filters: int,
    dropout: float,
    max_norm: float | None,
) -> None:
    if vocab_size < 1 or embed_dim < 1 or num_filters < 1:
        raise ConfigError(
            f"Expected vocab_size, embed_dim and num_filters >= 1, received vocab_size="
            f"{vocab_size}, embed_dim={embed_dim}, num_filters={num_filters}"
        )
    if not filter_sizes or min(filter_sizes) < 1:
        raise ConfigError(
            f"Expected filter_sizes: one or more widths >= 1, received filter_sizes={filter_sizes}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"Expected 0 <= dropout < 1, received dropout={dropout}")
    if max_norm is not None and max_norm <= 0:
        raise ConfigError(f"Expected max_norm > 0 or None, received max_norm={max_norm}")


def _check_mode(mode: str, padding_idx: int, vocab_size: int, in_channels: int) -> None:
    if mode not in MODES:
        raise ConfigError(f"Expected mode in {MODES}, received mode={mode!r}")
    if not 0 <= padding_idx < vocab_size:
        raise ConfigError(
            f"Expected 0 <= padding_idx < vocab_size={vocab_size}, received padding_idx={padding_idx}"
        )
    if in_channels != 1:
        raise ConfigError(
            f"KimCNN reads one sequence of token ids: expected in_channels=1, received "
            f"in_channels={in_channels}; for two embedding channels use mode='multichannel'"
        )


# input_shape: the longest MR sentence under Kim's tokenizer is 56 tokens (Kim's Table 1 data).
@register_model(
    "kim_cnn",
    input_shape=(56,),
    test_input_shape=(20,),
    paper="Kim 2014",
    year=2014,
    task="classify",
)
def kim_cnn(**kwargs: Any) -> KimCNN:
    return KimCNN(**kwargs)
