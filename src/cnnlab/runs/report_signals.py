"""Report sections for runs whose inputs are not images: vibration signals, audio
waveforms and sentences (the kind comes from the model record's ``preprocess``)."""

from __future__ import annotations

from typing import Any

import torch

from cnnlab.inspect import attribution, signal_views
from cnnlab.models.saved import preprocess

CAM_EXAMPLES = 4  # test inputs drawn with their Grad-CAM
NGRAM_EXAMPLES = 8  # test sentences listed with the n-grams that decided them


def kind_of(run: Any) -> str | None:
    """ "text", "audio", "signal" (or "mulaw"), or None for images."""
    kind = (run.model_config.get("preprocess") or {}).get("kind")
    return str(kind) if kind else None


def sections(run: Any, kind: str) -> list[str]:
    """The kind's own sections, after the shared summary, curves and confusion matrix."""
    from cnnlab.runs import report

    if kind == "text":
        return [_ngrams_section(run, report)]
    rate = float(run.model_config["preprocess"].get("sample_rate", 1.0))
    out = [_cam_section(run, report, rate)]
    if any(isinstance(m, torch.nn.Conv1d) for m in run.inner.modules()):
        figure = signal_views.filters_figure(run.inner, rate)
        caption = "top: taps; bottom: magnitude response, 0 dB at each filter's peak"
        out.append(report._section("filters", "First-layer filters",
                                   report._img(report._figure_uri(figure), "filters", caption)))  # fmt: skip
    return out


def _cam_section(run: Any, report: Any, rate: float) -> str:
    n = min(CAM_EXAMPLES, len(run.x_test))
    x = preprocess(run.x_test[:n], run.model_config)
    pred = run.probs[:n].argmax(1)
    spectrogram = getattr(run.inner, "spectrogram", None)
    cams = attribution.grad_cam(run.model, x)
    figures = []
    for i in range(n):
        title = f"pred {run.classes[int(pred[i])]} / true {run.classes[int(run.y_test[i])]}"
        if cams.dim() == 3 and spectrogram is not None:  # maps over time and frequency
            with torch.no_grad():
                spec = spectrogram(x[i : i + 1])[0, 0]
            seconds = x.shape[-1] / rate
            fig = signal_views.spectrogram_cam_figure(spec, cams[i], seconds, title)
        else:
            fig = signal_views.waveform_cam_figure(run.x_test[i, 0], cams[i], rate, title)
        figures.append(report._img(report._figure_uri(fig), f"grad-cam {i}"))
    what = "log-mel spectrogram" if spectrogram is not None else "waveform"
    note = f"<p>Grad-CAM of the predicted class over the {what}: red is what decided it.</p>"
    return report._section("grad-cam", "Grad-CAM", note + "".join(figures))


def _ngrams_section(run: Any, report: Any) -> str:
    from cnnlab.data.text import Vocabulary
    from cnnlab.inspect.ngrams import top_ngrams

    vocab = Vocabulary.from_dict(run.model_config["preprocess"]["vocabulary"])
    rows = []
    for i in range(min(NGRAM_EXAMPLES, len(run.x_test))):
        ids = run.x_test[i]
        found = top_ngrams(run.inner, ids, vocab, k=3)
        sentence = " ".join(vocab.decode([t for t in ids.tolist() if t != 0]))
        fired = "; ".join(f"“{g['ngram']}” {g['contribution']:+.2f}" for g in found)
        pred, true = int(run.probs[i].argmax()), int(run.y_test[i])
        rows.append([sentence, run.classes[pred], run.classes[true], fired])
    table = report._table(["sentence", "predicted", "true", "n-grams that fired (contribution)"],
                          rows)  # fmt: skip
    note = (
        "<p>For each sentence, the max-pooled features that pushed hardest towards the "
        "predicted class, and the n-gram where each one peaked.</p>"
    )
    return report._section("ngrams", "What fired", note + table)
