"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio"), with
fast generation by per-layer queues (Paine et al. 2016, "Fast Wavenet Generation
Algorithm"); its 8-bit codes are mu-law companded (cnnlab.data.mulaw)."""

from __future__ import annotations

import time
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnlab.core.errors import ConfigError, ShapeMismatchError
from cnnlab.data.mulaw import mu_law_decode as mu_law_decode  # WaveNet's codes, re-exported
from cnnlab.data.mulaw import mu_law_encode as mu_law_encode
from cnnlab.layers.causal import CausalConv1d, CausalQueue
from cnnlab.models.base import check_num_classes, traced
from cnnlab.models.registry import register_model

# -- the network ---------------------------------------------------------------------------


class ResidualLayer(nn.Module):
    """Dilated causal conv -> tanh(filter) * sigmoid(gate) -> 1x1 residual and 1x1 skip.

    One conv makes both the filter and the gate pre-activations (its two halves); a global
    condition adds a learned vector to both.
    """

    def __init__(
        self,
        residual_channels: int,
        dilation_channels: int,
        skip_channels: int,
        kernel_size: int,
        dilation: int,
        num_conditions: int,
    ) -> None:
        super().__init__()
        self.conv = CausalConv1d(residual_channels, 2 * dilation_channels, kernel_size, dilation)
        self.condition = (
            nn.Embedding(num_conditions, 2 * dilation_channels) if num_conditions else None
        )
        self.residual = nn.Conv1d(dilation_channels, residual_channels, 1)
        self.skip = nn.Conv1d(dilation_channels, skip_channels, 1)

    def condition_bias(self, condition: Tensor | None) -> Tensor | None:
        """Condition ids (B,) -> what is added to filter and gate (B, 2 * dilation_channels)."""
        return None if self.condition is None or condition is None else self.condition(condition)

    def forward(self, x: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, R, L) -> residual output (B, R, L) and skip output (B, S, L)."""
        z = self.conv(x)  # (B, 2D, L)
        z = z if bias is None else z + bias[:, :, None]
        a = _gated(z, dim=1)  # (B, D, L)
        return x + self.residual(a), self.skip(a)

    def step(self, x_t: Tensor, queue: CausalQueue, bias: Tensor | None) -> tuple[Tensor, Tensor]:
        """The same for one time step: (B, R) -> (B, R) and (B, S)."""
        z = queue(x_t)  # (B, 2D)
        z = z if bias is None else z + bias
        a = _gated(z, dim=1)  # (B, D)
        residual = F.linear(a, self.residual.weight[:, :, 0], self.residual.bias)
        return x_t + residual, F.linear(a, self.skip.weight[:, :, 0], self.skip.bias)


def _gated(z: Tensor, dim: int) -> Tensor:
    """tanh(filter) * sigmoid(gate), the two halves of ``z`` along ``dim``."""
    filt, gate = z.chunk(2, dim)
    return torch.tanh(filt) * torch.sigmoid(gate)


class WaveNet(nn.Module):
    """An autoregressive model of quantised samples: logits for sample t + 1 at position t.

    Input: int64 codes (B, L) in [0, num_classes). With ``num_conditions > 0`` the input is
    (B, 1 + L): column 0 holds each sequence's condition id in [0, num_conditions) (e.g.
    the spoken digit) and columns 1..L its codes. Carrying the condition as a column lets
    cnnlab's single-input trainer, loaders and evaluator pass it without knowing about it.
    Output: logits (B, num_classes, L); position t (codes up to t) predicts code t + 1.

    Layers: an embedding of the codes (a one-hot input through a 1x1 conv, without
    building the one-hot), a causal conv, then ``stacks`` x ``layers_per_stack`` residual
    layers with dilations 1, 2, ..., 2^(layers_per_stack - 1) in each stack. The skip
    outputs are summed and go through ReLU -> 1x1 -> ReLU -> 1x1 to the logits.

    Args:
        num_classes: quantisation levels (256: 8-bit mu-law).
        residual_channels: channels of the residual stream.
        dilation_channels: channels of the gated activation.
        skip_channels: channels of the skip connections and the output head.
        layers_per_stack: residual layers per stack (dilations up to 2^(n - 1)).
        stacks: repetitions of the dilation pattern.
        kernel_size: taps of every causal conv (2 in the paper).
        num_conditions: global condition ids (0: unconditioned).
    """

    input_dtype = torch.int64  # what cnnlab's summary feeds the model

    def __init__(
        self,
        num_classes: int = 256,
        residual_channels: int = 32,
        dilation_channels: int = 32,
        skip_channels: int = 64,
        layers_per_stack: int = 10,
        stacks: int = 2,
        kernel_size: int = 2,
        num_conditions: int = 0,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        sizes = {
            "residual_channels": residual_channels, "dilation_channels": dilation_channels,
            "skip_channels": skip_channels, "layers_per_stack": layers_per_stack,
            "stacks": stacks, "kernel_size": kernel_size,
        }  # fmt: skip
        for name, value in sizes.items():
            if value < 1:
                raise ConfigError(f"Expected {name} >= 1, received {name}={value}")
        if num_conditions < 0:
            raise ConfigError(
                f"Expected num_conditions >= 0, received num_conditions={num_conditions}"
            )
        self.num_classes, self.num_conditions = num_classes, num_conditions
        self.dilations = [2**i for _ in range(stacks) for i in range(layers_per_stack)]
        self.embedding = nn.Embedding(num_classes, residual_channels)
        self.causal = CausalConv1d(residual_channels, residual_channels, kernel_size)
        self.layers = nn.ModuleList(
            ResidualLayer(
                residual_channels, dilation_channels, skip_channels, kernel_size, d, num_conditions
            )
            for d in self.dilations
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(skip_channels, skip_channels, 1),
            nn.ReLU(),
            nn.Conv1d(skip_channels, num_classes, 1),
        )

    @property
    def receptive_field(self) -> int:
        """Codes one output sees: (kernel_size - 1) * (1 + sum of dilations) + 1 (the first
        causal conv adds its kernel_size - 1)."""
        convs = [self.causal, *(layer.conv for layer in self.blocks)]
        return sum(conv.left_padding for conv in convs) + 1

    def receptive_field_formula(self) -> str:
        """The receptive field with its arithmetic, as `cnnlab summary` prints it."""
        dilations = [int(layer.conv.dilation[0]) for layer in self.blocks]
        k = int(self.causal.kernel_size[0])
        return (
            f"receptive field: {self.receptive_field} samples = (kernel_size - 1) x "
            f"(1 + sum of dilations) + 1 = {k - 1} x (1 + {sum(dilations)}) + 1  "
            f"(dilations {dilations})"
        )

    @property
    def blocks(self) -> list[ResidualLayer]:
        """The residual layers in order (what ``self.layers`` holds, typed)."""
        return cast(list[ResidualLayer], list(self.layers))

    def forward(self, x: Tensor) -> Tensor:
        codes, condition = self.split_input(x)  # (B, L), (B,) or None
        h = self.embedding(codes).transpose(1, 2)  # (B, R, L)
        h = self.causal(h)
        skip = h.new_zeros(())  # the first sum broadcasts it to (B, S, L)
        for layer in self.blocks:
            h, s = layer(h, layer.condition_bias(condition))
            skip = skip + s
        return self.head(skip)  # (B, num_classes, L)

    def split_input(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Codes (B, L) and condition ids (B,) (None when unconditioned), both checked."""
        columns = "1 + L" if self.num_conditions else "L"
        if not isinstance(x, Tensor) or x.dtype != torch.int64 or x.dim() != 2:
            got = f"dtype={x.dtype} shape={tuple(x.shape)}" if isinstance(x, Tensor) else type(x)
            raise ShapeMismatchError(f"WaveNet expects int64 codes (B, {columns}), received {got}")
        if x.shape[1] < 1 + int(self.num_conditions > 0):
            raise ShapeMismatchError(
                f"WaveNet expects int64 codes (B, {columns}) with L >= 1, received {tuple(x.shape)}"
            )
        if not self.num_conditions:
            return self._checked(x, self.num_classes, "codes"), None
        condition = self._checked(x[:, 0], self.num_conditions, "condition ids (column 0)")
        return self._checked(x[:, 1:], self.num_classes, "codes"), condition

    @staticmethod
    def _checked(values: Tensor, bound: int, what: str) -> Tensor:
        if not values.numel() or traced():  # reading the range: eager calls only
            return values
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= bound:
            raise ConfigError(
                f"WaveNet expects {what} in [0, {bound}), received values in [{low}, {high}]"
            )
        return values

    # -- generation ------------------------------------------------------------------------

    def stream(self, condition: int | Tensor | None = None, batch: int = 1) -> WaveNetStream:
        """A fresh incremental state: push codes one step at a time, get each step's logits."""
        return WaveNetStream(self, self._condition_ids(condition, batch), batch)

    def generate(
        self,
        num_samples: int,
        *,
        condition: int | Tensor | None = None,
        batch: int = 1,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        fast: bool = True,
        prime: Tensor | None = None,
    ) -> Tensor:
        """Sample ``num_samples`` codes per sequence: int64 (batch, num_samples).

        Each code is drawn with ``torch.multinomial`` from softmax(logits / temperature),
        using ``generator``; the same generator state gives the same codes either way.

        Args:
            num_samples: codes to generate (the prime is not repeated in the output).
            condition: the condition id, one for all (int) or one per sequence (batch,);
                required exactly when the model is conditioned.
            batch: sequences generated side by side.
            generator: the random source of the sampling.
            temperature: > 0; below 1 sharpens the distribution.
            fast: per-layer queues of past activations (Paine et al.): O(layers) per
                sample. False recomputes the forward over the last ``receptive_field``
                codes for every sample (the naive way; earlier codes cannot change it).
            prime: codes (P,) or (batch, P) the sequences start from; default one
                silence code (the middle code, mu-law's 0).
        """
        if num_samples < 1 or temperature <= 0:
            raise ConfigError(
                f"Expected num_samples >= 1 and temperature > 0, received "
                f"num_samples={num_samples} temperature={temperature}"
            )
        condition_ids = self._condition_ids(condition, batch)
        history = self._prime(prime, batch)  # (B, P)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                return self._sample(
                    num_samples, condition_ids, history, generator, temperature, fast
                )
        finally:
            self.train(was_training)

    def _sample(
        self,
        num_samples: int,
        condition: Tensor | None,
        history: Tensor,
        generator: torch.Generator | None,
        temperature: float,
        fast: bool,
    ) -> Tensor:
        stream = WaveNetStream(self, condition, len(history)) if fast else None
        codes: list[Tensor] = []
        for i in range(num_samples):
            if stream is not None:  # push only what is new since the last step
                logits = stream(history if i == 0 else codes[-1])[:, :, -1]
            else:
                window = history[:, -self.receptive_field :]
                if condition is not None:
                    window = torch.cat([condition[:, None], window], 1)
                logits = self(window)[:, :, -1]  # (B, num_classes)
            probs = torch.softmax(logits / temperature, dim=-1)
            codes.append(torch.multinomial(probs, 1, generator=generator))  # (B, 1)
            if stream is None:
                history = torch.cat([history, codes[-1]], 1)
        return torch.cat(codes, 1)

    def _condition_ids(self, condition: int | Tensor | None, batch: int) -> Tensor | None:
        if batch < 1:
            raise ConfigError(f"Expected batch >= 1, received batch={batch}")
        if not self.num_conditions:
            if condition is not None:
                raise ConfigError(
                    f"this WaveNet is unconditioned (num_conditions=0), received "
                    f"condition={condition}; build it with num_conditions > 0"
                )
            return None
        if condition is None:
            raise ConfigError(
                f"this WaveNet is conditioned (num_conditions={self.num_conditions}): "
                f"expected condition=<id in [0, {self.num_conditions})>, received None"
            )
        device = self.embedding.weight.device
        ids = torch.as_tensor(condition, dtype=torch.int64, device=device).reshape(-1)
        if len(ids) == 1:
            ids = ids.expand(batch)
        if len(ids) != batch:
            raise ShapeMismatchError(
                f"Expected one condition or {batch} (one per sequence), received {len(ids)}"
            )
        return self._checked(ids, self.num_conditions, "condition ids")

    def _prime(self, prime: Tensor | None, batch: int) -> Tensor:
        device = self.embedding.weight.device
        if prime is None:
            return torch.full((batch, 1), self.num_classes // 2, dtype=torch.int64, device=device)
        if prime.dtype != torch.int64 or prime.dim() not in (1, 2) or prime.shape[-1] < 1:
            raise ShapeMismatchError(
                f"Expected prime int64 codes (P,) or ({batch}, P) with P >= 1, received "
                f"dtype={prime.dtype} shape={tuple(prime.shape)}"
            )
        prime = prime.to(device).expand(batch, -1) if prime.dim() == 1 else prime.to(device)
        if len(prime) != batch:
            raise ShapeMismatchError(
                f"Expected prime (P,) or ({batch}, P), received {tuple(prime.shape)}"
            )
        return self._checked(prime, self.num_classes, "prime codes")


class WaveNetStream:
    """A WaveNet run one time step at a time, each conv reading its own queue of past
    inputs (Paine et al. 2016): every step costs O(layers), not O(receptive field).

    Calling it with codes (B, n) pushes them in order and returns their logits
    (B, num_classes, n): what ``model(codes)`` returns, computed step by step, continuing
    from every code pushed before.
    """

    def __init__(self, model: WaveNet, condition: Tensor | None, batch: int) -> None:
        self.model = model
        self.first = CausalQueue(model.causal, batch)
        self.queues = [CausalQueue(layer.conv, batch) for layer in model.blocks]
        self.biases = [layer.condition_bias(condition) for layer in model.blocks]

    def __call__(self, codes: Tensor) -> Tensor:
        return torch.stack([self.push(codes[:, i]) for i in range(codes.shape[1])], -1)

    def push(self, code: Tensor) -> Tensor:
        """Codes (B,) of one time step -> logits (B, num_classes) for the next."""
        model = self.model
        h = self.first(model.embedding(code))  # (B, R)
        skip = h.new_zeros(())  # the first sum broadcasts it to (B, S)
        for layer, queue, bias in zip(model.blocks, self.queues, self.biases, strict=True):
            h, s = layer.step(h, queue, bias)
            skip = skip + s
        return model.head(skip[:, :, None])[:, :, 0]


def generation_speed(
    model: WaveNet, num_samples: int = 2000, condition: int | None = None
) -> dict[str, float]:
    """Seconds to generate ``num_samples`` codes the fast way and the naive way (one
    sequence, same seed), and their ratio. For benchmarks; it takes a while."""
    if condition is None and model.num_conditions:
        condition = 0
    seconds = {}
    for name, fast in (("fast_seconds", True), ("naive_seconds", False)):
        generator = torch.Generator().manual_seed(0)
        started = time.perf_counter()
        model.generate(num_samples, condition=condition, generator=generator, fast=fast)
        seconds[name] = time.perf_counter() - started
    return {**seconds, "speedup": seconds["naive_seconds"] / seconds["fast_seconds"]}


@register_model(
    "wavenet",
    input_shape=(4096,),
    test_input_shape=(256,),
    paper="van den Oord et al. 2016",
    year=2016,
    task="generate",
)
def wavenet(in_channels: int | None = None, **kwargs: Any) -> WaveNet:
    """WaveNet(**kwargs). ``in_channels`` is accepted and ignored: codes have no channel
    axis, and cnnlab's build_model passes input_shape[0] (here the sequence length)."""
    return WaveNet(**kwargs)
