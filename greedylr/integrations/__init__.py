"""Adapters that tune training run by PyTorch Lightning or the Hugging Face Trainer.

Each lives in its own module and imports its framework only there (an extra each):

- :mod:`greedylr.integrations.lightning`: ``ReportCheckpointCallback``, a Lightning
  ``Callback`` (``pip install greedylr[lightning]``);
- :mod:`greedylr.integrations.transformers`: ``ReportCheckpointCallback``, a Hugging Face
  ``TrainerCallback`` (``pip install greedylr[transformers]``).

Both report each evaluation's loss (and the other logged metrics) to greedylr's reporter with
a checkpoint, continue from ``reporter.checkpoint()`` when the trial starts, and let the
engine's stop end the run (a pruned trial ends as pruned). GreedyLR itself needs no adapter:
both trainers step it with the monitored metric, as they do ``ReduceLROnPlateau``.
"""

from __future__ import annotations


__all__: list[str] = []  # the adapters live in their modules, each importing its framework
