"""Spoken digits: a CNN on log-mel spectrograms (computed inside the model) trained on
FSDD, tested on speakers it never heard, then a WAV file classified.

CNNLAB_DATA_DIRS=../shared/data .venv/bin/python examples/speech.py   # ~5 min on 2 cores
"""

from __future__ import annotations

from cnnlab import data
from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import format_topk, predict_files
from cnnlab.runs import run_training

# Every recording of theo and nicolas tests: the network must generalise to new voices.
held_out = {"split": "speakers", "test_speakers": ["nicolas", "theo"]}
config = TrainConfig.from_recipe("fsdd-speech", name="speech", dataset_args=held_out)
metrics = run_training(config)
print(f"held-out speakers: {metrics['test_accuracy']:.2%}")

wav = data.fetch("fsdd", download=False)["recordings/7_theo_3.wav"]
print(format_topk(predict_files("runs/speech", [str(wav)])))
print("Grad-CAM over time and frequency: runs/speech/report.html")
