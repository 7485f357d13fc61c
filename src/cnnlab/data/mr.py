"""The MR sentence polarity dataset (Pang & Lee 2005), one fold of 10-fold cross-validation.

Kim (2014) reports MR by 10-fold cross-validation; ``fold`` picks which tenth is the test
set, and the vocabulary is built from the other nine only, so no test word is known in
advance. Inputs are int64 token ids (N, max_len), right-padded with 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.data import download as _download
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.download import Resolver
from cnnlab.data.real_sources import MR
from cnnlab.data.registry import register_dataset
from cnnlab.data.text import Vocabulary, cv_folds, read_mr, tokenize

MAX_LEN = 56  # the longest MR sentence in Kim's preprocessing has 56 tokens


@register_dataset(
    "mr", title=MR.title, origin=MR.homepage,
    options={"fold": 0, "folds": 10, "seed": 0, "max_len": MAX_LEN, "min_count": 1},
    facts={"num_classes": 2, "input_shape": (MAX_LEN,), "train_size": 9595, "test_size": 1067},
)  # fmt: skip
def load_mr(name: str, resolver: Resolver, opts: dict[str, Any]) -> ImageDataset:
    """Sentences as token ids; test = fold ``fold`` of ``folds`` stratified folds (seeded)."""
    folds, fold = int(opts["folds"]), int(opts["fold"])
    if folds < 2 or not 0 <= fold < folds:
        raise ConfigError(
            f"load({name!r}): expected folds >= 2 and 0 <= fold < folds, "
            f"received fold={fold}, folds={folds}"
        )
    max_len = int(opts["max_len"])
    if max_len < 1:
        raise ConfigError(f"load({name!r}): expected max_len >= 1, received {max_len}")
    paths = _download.resolve(MR, resolver)
    folder = next(iter(paths.values())).parent
    texts, labels = read_mr(folder)
    tokens = [tokenize(t) for t in texts]
    train, test = cv_folds(len(texts), k=folds, seed=int(opts["seed"]), labels=labels)[fold]
    vocab = Vocabulary.build([tokens[i] for i in train], min_count=int(opts["min_count"]))
    x = vocab.encode_batch(tokens, max_len)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    train_t, test_t = torch.as_tensor(train), torch.as_tensor(test)
    return ImageDataset(
        name, x[train_t], y[train_t], x[test_t], y[test_t], list(MR.classes),
        source=str(folder),
        extra={
            "split": f"fold {fold} of {folds} stratified folds, seed {opts['seed']}",
            "vocabulary": f"{len(vocab)} tokens from the training folds",
        },
        preprocess={
            "kind": "text", "tokenizer": "kim", "max_len": max_len, "vocabulary": vocab.to_dict()
        },
    )  # fmt: skip
