"""Semantic segmentation of composed scenes: a class for every pixel, scored by IoU.

.venv/bin/python examples/segmentation.py   # 2 epochs of FCN-8s on 5,000 scenes: a few minutes
"""

from __future__ import annotations

import cnnlab
from cnnlab.data import load

data = load("scenes", train_size=5000, test_size=1000)  # mask: 0 = background, item class + 1
model = cnnlab.create_model("fcn8s", num_classes=len(data.mask_classes or []))
config = cnnlab.TrainConfig(
    name="segmentation", task="segment", task_args={"dice": 0.5}, epochs=2, lr=0.2,
    label_smoothing=0.0,
)  # fmt: skip
trainer = cnnlab.Trainer(model, config)
trainer.fit(data)
result = trainer.evaluate(data.x_test, data.targets_test)
print(f"test mIoU {result['miou']:.3f}, pixel accuracy {result['pixel_accuracy']:.3f}")
cnnlab.save(model, "runs/segmentation")
# Then: cnnlab predict runs/segmentation scene.png --output masks/   (mask + overlay PNGs)
