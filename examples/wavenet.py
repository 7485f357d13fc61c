"""Train a small digit-conditioned WaveNet on spoken digits (FSDD as 8-bit mu-law), then
say "seven" with it: one second of audio written to runs/wavenet-example/seven.wav.

CNNLAB_DATA_DIRS=../shared/data .venv/bin/python examples/wavenet.py   # about 5 minutes

A few minutes of CPU training give speech-like babble with a digit's colour, not clear
words (benchmarks/wavenet.py measures how often a classifier hears the asked digit).
The same from the shell: `cnnlab train --dataset fsdd-mulaw --model wavenet ...`, then
`cnnlab generate runs/wavenet-example --condition 7 -o seven.wav`.
"""

from __future__ import annotations

import time

import torch

import cnnlab
from cnnlab.data import load
from cnnlab.data.wav import write_wav
from cnnlab.models.wavenet import mu_law_decode

# 0.5 s of every recording as mu-law codes; column 0 of the inputs is the digit.
data = load("fsdd-mulaw", chunk=4000)
config = cnnlab.TrainConfig(
    name="wavenet-example", model="wavenet", dataset="fsdd-mulaw",
    dataset_args={"chunk": 4000}, time_budget="4m",
    batch_size=8, optimizer="adam", lr=0.003, weight_decay=0.0, grad_clip=1.0,
    label_smoothing=0.0,  # a density model: smoothing would raise the NLL it reaches
    augment="none", tta=False, report=False, threads=1,
)  # fmt: skip
model = cnnlab.create_model(
    "wavenet", num_conditions=len(data.classes), residual_channels=32, dilation_channels=32,
    skip_channels=64, layers_per_stack=10, stacks=1,  # receptive field 1024 samples (0.13 s)
)  # fmt: skip
trainer = cnnlab.Trainer(model, config)
trainer.fit(data)
result = trainer.evaluate(data.x_test, data.targets_test)
print(f"test NLL {result['nll']:.3f} nats/sample (uniform guessing: ln 256 = 5.545)")
folder = cnnlab.save(model, "runs/wavenet-example")  # conditions and mu-law rate recorded

started = time.perf_counter()
codes = model.generate(8000, condition=7, generator=torch.Generator().manual_seed(0))
print(f"1 s of audio in {time.perf_counter() - started:.1f} s (fast per-layer queues)")
write_wav(folder / "seven.wav", mu_law_decode(codes[0]), 8000)
print(f"wrote {folder / 'seven.wav'}")
