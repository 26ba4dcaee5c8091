"""A tiny Hugging Face model and trial function for the integration tests (real Trainer)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import BertConfig
from transformers import BertForSequenceClassification
from transformers import Trainer
from transformers import TrainerCallback
from transformers import TrainingArguments
from transformers.utils import logging

from greedylr import GreedyLR
from greedylr.integrations.transformers import ReportCheckpointCallback
from greedylr.integrations.transformers import resume_folder


logging.set_verbosity_error()
logging.disable_progress_bar()


def dataset(rows: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 16, (rows, 4), generator=generator)
    labels = (tokens[:, 0] >= 8).long()
    return [{"input_ids": row, "labels": label} for row, label in zip(tokens, labels)]


def trainer(
    config: dict[str, Any], output_dir: str, callbacks: list[TrainerCallback], **arguments: Any
) -> Trainer:
    """A Trainer of a one-layer BERT with GreedyLR; ``arguments`` override the defaults.

    With ``config["x"]``, evaluation ``n`` reports ``((x - 0.3)^2 + 0.01) * (1 + 2 / n)`` as
    ``eval_score`` (the toy loss of the backend tests).
    """
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=16,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            max_position_embeddings=4,
            num_labels=2,
        )
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = GreedyLR(optimizer, factor=0.5, patience=0, min_lr=1e-5, max_lr=0.2)
    settings: dict[str, Any] = {
        "num_train_epochs": config["epochs"],
        "per_device_train_batch_size": 16,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": True,
        "seed": 0,
    }
    settings.update(arguments)
    evaluations = [0]

    def compute_metrics(_: Any) -> dict[str, float]:
        evaluations[0] += 1
        x = config.get("x", 0.3)
        return {"score": ((x - 0.3) ** 2 + 0.01) * (1 + 2 / evaluations[0])}

    return Trainer(
        model=model,
        args=TrainingArguments(output_dir=output_dir, **settings),
        train_dataset=dataset(64, 0),
        eval_dataset=dataset(32, 1),
        optimizers=(optimizer, scheduler),
        callbacks=callbacks,
        compute_metrics=compute_metrics if "x" in config else None,
    )


def train(config: dict[str, Any], reporter: Any) -> None:
    """The trial function: train, reporting each evaluation through the adapter."""
    import tempfile

    monitor = "eval_score" if "x" in config else "eval_loss"
    with tempfile.TemporaryDirectory() as output_dir:
        run = trainer(config, output_dir, [ReportCheckpointCallback(reporter, monitor=monitor)])
        run.train(resume_from_checkpoint=resume_folder(reporter, output_dir))
