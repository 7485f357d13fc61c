"""Multi-label classification: which Fashion-MNIST items are in each composed scene?

.venv/bin/python examples/multilabel.py     # 2 epochs on 5,000 scenes: a few minutes on 2 cores
"""

from __future__ import annotations

import cnnlab
from cnnlab.data import load
from cnnlab.engine.predictor import probabilities

# 1-4 items per 64x64 scene; targets: labels (multi-hot), mask, boxes. Cached after the first call.
data = load("scenes", train_size=5000, test_size=1000)
model = cnnlab.create_model("resnet_mini", num_classes=data.num_classes)
config = cnnlab.TrainConfig(
    name="multilabel", task="multilabel", epochs=2, lr=0.2, val_split=0.1, label_smoothing=0.0
)
trainer = cnnlab.Trainer(model, config)
trainer.fit(data)  # per-class thresholds are chosen on the validation split
print(
    "test:",
    {
        k: v
        for k, v in trainer.evaluate(data.x_test, data.targets_test).items()
        if not isinstance(v, list)
    },
)

folder = cnnlab.save(model, "runs/multilabel")
scores = probabilities(cnnlab.load(folder), data.x_test[:3])  # per-class probabilities
for row, truth in zip(scores.tolist(), data.targets_test["labels"][:3].tolist(), strict=True):
    top = sorted(range(len(row)), key=lambda k: -row[k])[:3]
    shown = ", ".join(f"{data.classes[k]} {row[k]:.2f}" for k in top)
    print("top 3:", shown, "| true:", [data.classes[k] for k, t in enumerate(truth) if t])
