"""Bearing faults from vibration: WDCNN on CWRU's 10-class task, split by time, then the
windows of one whole recording classified and the Grad-CAM report written.

CNNLAB_DATA_DIRS=../shared/data .venv/bin/python examples/vibration.py   # ~20 s on 2 cores
"""

from __future__ import annotations

from cnnlab.engine.config import TrainConfig
from cnnlab.engine.predictor import format_topk, predict_files
from cnnlab.runs import run_training

# The recipe: WDCNN, 20 epochs of Adam, time shifts and gains as augmentation. The
# dataset keeps the first 70% of each recording for training and the rest for the test.
config = TrainConfig.from_recipe("cwru-wdcnn", name="vibration")
metrics = run_training(config)
print(f"test accuracy {metrics['test_accuracy']:.2%} on {metrics['test_images']} windows")

# A whole recording: every 2,048-sample window is scored, the probabilities averaged.
from cnnlab import data  # noqa: E402

recording = data.fetch("cwru", download=False)["1797_IR_14_DE12.npz"]
print(format_topk(predict_files("runs/vibration", [str(recording)])))
print("report with Grad-CAM over time and the filters' frequency responses:")
print("  runs/vibration/report.html")
