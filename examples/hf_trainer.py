"""Tune GreedyLR inside the Hugging Face Trainer: ``optimizers=(optimizer, GreedyLR(...))``.

The Trainer steps GreedyLR with the evaluation loss after each evaluation, as it does
``ReduceLROnPlateau``; :class:`greedylr.integrations.transformers.ReportCheckpointCallback`
reports each evaluation to the engine (which may stop the trial: it then ends as pruned) with
the Trainer's checkpoint, and :func:`~greedylr.integrations.transformers.resume_folder`
continues a retried trial from it. The model is a tiny BERT built from a config (nothing is
downloaded). Needs the ``optuna`` and ``transformers`` extras.
Run: ``python examples/hf_trainer.py [--smoke] [--backend optuna|ray|syne-tune]``.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
from transformers import BertConfig
from transformers import BertForSequenceClassification
from transformers import Trainer
from transformers import TrainingArguments

import greedylr
from greedylr.integrations.transformers import ReportCheckpointCallback
from greedylr.integrations.transformers import resume_folder
from greedylr.schedulers import create_schedule
from greedylr.searchers import greedylr_space


VOCABULARY = 32
LENGTH = 8


def dataset(rows: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """Token sequences labelled 1 when their first token is in the upper half of the vocabulary."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCABULARY, (rows, LENGTH), generator=generator)
    labels = (tokens[:, 0] >= VOCABULARY // 2).long()
    return [{"input_ids": row, "labels": label} for row, label in zip(tokens, labels)]


def tiny_bert(seed: int) -> BertForSequenceClassification:
    """A one-layer BERT with 16 hidden units, randomly initialized."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCABULARY,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def train(config: dict[str, Any], reporter: Any) -> None:
    """One trial: train for ``config["epochs"]`` epochs, evaluating (and reporting) each one."""
    seed = config.get("seed", 0)
    model = tiny_bert(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"])
    knobs = {k: v for k, v in config.items() if k not in ("lr", "schedule", "epochs", "seed")}
    scheduler = create_schedule("greedylr", optimizer, horizon=config["epochs"], **knobs)
    with tempfile.TemporaryDirectory(prefix="greedylr-hf-") as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            num_train_epochs=config["epochs"],
            per_device_train_batch_size=32,
            per_device_eval_batch_size=128,
            eval_strategy="epoch",
            save_strategy="epoch",  # the checkpoint reported with each evaluation
            save_total_limit=1,
            metric_for_best_model="eval_loss",  # what the Trainer steps GreedyLR with
            logging_strategy="no",
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
            seed=seed,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset(256, seed),
            eval_dataset=dataset(128, seed + 1),
            optimizers=(optimizer, scheduler),  # a GreedyLR: stepped with eval_loss
            callbacks=[ReportCheckpointCallback(reporter, monitor="eval_loss")],
        )
        trainer.train(resume_from_checkpoint=resume_folder(reporter, output_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few trials, for CI")
    parser.add_argument("--backend", default="optuna", help="optuna, ray or syne-tune")
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="greedylr-")
    result = greedylr.tune(
        train,
        space=greedylr_space(lr=(1e-4, 1e-2), variant="hf"),
        backend=args.backend,
        n_trials=3 if args.smoke else 40,
        max_epochs=2 if args.smoke else 20,
        workers=1 if args.smoke else 2,
        out=out,
        progress=False,
    )
    print(result.trials[["trial", "status", "epochs", "final_loss"]].to_string(index=False))
    print(f"best loss {result.best_loss:.5f} with {result.best_config}")


if __name__ == "__main__":
    main()
