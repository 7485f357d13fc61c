"""Train, evaluate, save and reload a CNN on Fashion-MNIST with the Python API.

.venv/bin/python examples/quickstart.py        # 2 epochs of resnet_mini: about a minute on 2 idle cores
"""

from __future__ import annotations

import cnnlab
from cnnlab.data import load
from cnnlab.engine.predictor import probabilities

data = load("fashion-mnist")  # uint8 tensors in memory: (60000, 1, 28, 28) and (10000, 1, 28, 28)
model = cnnlab.create_model("resnet_mini", num_classes=data.num_classes)
config = cnnlab.TrainConfig(name="quickstart", epochs=2)
trainer = cnnlab.Trainer(model, config)
trainer.fit(data)  # a checkpoint after every epoch in runs/quickstart/
print("test:", trainer.evaluate(data.x_test, data.y_test))

folder = cnnlab.save(model, "runs/quickstart")  # classes, normalisation, TTA: recorded by fit
reloaded = cnnlab.load(folder)  # rebuilt from config.json; weights from safetensors
top = probabilities(reloaded, data.x_test[:3]).topk(3)
for values, indices in zip(top.values.tolist(), top.indices.tolist(), strict=True):
    print(", ".join(f"{data.classes[i]} {v:.2f}" for v, i in zip(values, indices, strict=True)))
