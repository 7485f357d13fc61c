"""Facial keypoints: 15 (x, y) points on procedural 96x96 faces, RMSE in pixels.

.venv/bin/python examples/keypoints.py      # 3 epochs on 4,000 faces: a couple of minutes
"""

from __future__ import annotations

import cnnlab
from cnnlab.data import load

# Kaggle's Facial Keypoints Detection CSV works the same way:
# load("facial-keypoints", path="training.csv"); points missing in a row are masked.
data = load("faces", train_size=4000, test_size=500)
model = cnnlab.create_model("keypoints_heatmap", num_classes=2 * data.num_classes)
config = cnnlab.TrainConfig(
    name="keypoints", task="keypoints", epochs=3, optimizer="adam", lr=2e-3, weight_decay=0.0,
    label_smoothing=0.0,
)  # fmt: skip
trainer = cnnlab.Trainer(model, config)  # flips swap left and right points (data.flip_index)
trainer.fit(data)
result = trainer.evaluate(data.x_test, data.targets_test)
print(f"test RMSE {result['rmse_px']:.2f} px, PCK@0.05 {result['pck']:.3f}")
cnnlab.save(model, "runs/keypoints")
