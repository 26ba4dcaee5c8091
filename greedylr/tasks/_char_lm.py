"""``char-lm``: a small causal transformer that predicts the next character of English technical
prose: the help topics of Python's ``pydoc_data/topics.py``, shipped with CPython.

The text is the 79 topics (about 465,000 characters in CPython 3.11; other versions differ a
little) joined in an order fixed by a data seed, cut 90 / 5 / 5 % into the training,
validation and test texts. The vocabulary is every character of the whole text. The metrics
are the mean cross-entropy of the next character in nats (``loss``) and in bits
(``bits_per_char``), over the validation text cut into windows of ``context`` + 1 characters
that overlap by one: every character but the first of each window is predicted once.
"""

from __future__ import annotations

import importlib
import math
from functools import lru_cache
from typing import Any

import torch
from torch.nn import functional

from greedylr.tasks import builtin_task
from greedylr.tasks._classifier import size_param
from greedylr.tasks._training import RunSettings
from greedylr.tasks._training import train_loop
from greedylr.tasks._training import training_device


_TASK = builtin_task("char-lm")
_DATA_SEED = 0  # the split is the same for every trial; `seed` drives init and batches
HEADS = 4
EVALUATION_CHUNK = 128  # windows per forward pass when measuring


def load_topics_text() -> str:
    """The text of the topics of ``pydoc_data.topics``, joined in a fixed shuffled order."""
    topics = importlib.import_module("pydoc_data.topics").topics
    names = sorted(topics)
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(_DATA_SEED))
    return "\n\n".join(topics[names[index]] for index in order.tolist())


@lru_cache(maxsize=1)
def _texts() -> tuple[str, dict[str, torch.Tensor]]:
    """The vocabulary and the training, validation and test texts as character ids. Built
    once per process.
    """
    text = load_topics_text()
    vocabulary = "".join(sorted(set(text)))
    index = {character: i for i, character in enumerate(vocabulary)}
    ids = torch.tensor([index[character] for character in text], dtype=torch.long)
    train_end, val_end = int(0.9 * len(ids)), int(0.95 * len(ids))
    return vocabulary, {
        "train": ids[:train_end],
        "val": ids[train_end:val_end],
        "test": ids[val_end:],
    }


def _windows(ids: torch.Tensor, context: int) -> torch.Tensor:
    """``ids`` cut into windows of ``context + 1`` that overlap by one (the rest dropped)."""
    count = (len(ids) - 1) // context
    starts = torch.arange(count) * context
    return ids[starts.unsqueeze(1) + torch.arange(context + 1)]


class _Block(torch.nn.Module):
    """A pre-norm transformer block: causal self-attention, then a 4x-wide GELU MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.attention_norm = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.projection = torch.nn.Linear(width, width)
        self.mlp_norm = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (
            part.view(batch, length, HEADS, width // HEADS).transpose(1, 2)
            for part in self.qkv(self.attention_norm(x)).chunk(3, dim=-1)
        )
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.mlp_norm(x))


class CharTransformer(torch.nn.Module):
    """Token and learned position embeddings, ``layers`` blocks, a final norm, a linear head."""

    def __init__(self, *, vocabulary: int, context: int, width: int, layers: int) -> None:
        super().__init__()
        self.token = torch.nn.Embedding(vocabulary, width)
        self.position = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.Sequential(*(_Block(width) for _ in range(layers)))
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, vocabulary)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """The logits of the next character at every position of ``ids`` ``(batch, length)``."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.head(self.norm(self.blocks(self.token(ids) + self.position(positions))))


def train(config: dict[str, Any], reporter: Any) -> None:
    """Train a 2-layer causal transformer (width 64, 4 heads) on windows of 64 characters.

    An epoch is ``steps_per_epoch`` (100) optimizer steps, each on ``batch_size`` (32) windows
    of ``context`` + 1 (65) characters drawn at random from the training text: about half of
    it. The model has about 0.1M parameters with the defaults.

    Config keys besides the schedule's and the optimizer's: ``batch_size`` (32), ``context``
    (64), ``steps_per_epoch`` (100), ``width`` (64, a multiple of 4), ``layers`` (2). Default
    optimizer: SGD with momentum 0.9 (AdamW is the usual choice for transformers: set
    ``optimizer`` to ``adamw``). Reports the validation ``loss`` (nats per character) and
    ``bits_per_char`` (``loss / ln 2``); the last epoch adds ``test_loss`` and
    ``test_bits_per_char``. Trains on the GPU when there is one; checkpoints every epoch.

    An epoch takes about 2.4 s on one torch thread of a 2-core CPU (measured with the
    defaults, validation included; GPU time not measured: no GPU was at hand).

    Raises:
        ValueError: A size is out of range, or ``width`` is not a multiple of 4.
    """
    settings = RunSettings.from_config(
        config, task=_TASK, default_optimizer_params={"momentum": 0.9}
    )
    batch_size = size_param(settings, "batch_size", 32, maximum=65536)
    context = size_param(settings, "context", 64, maximum=4096)
    steps_per_epoch = size_param(settings, "steps_per_epoch", 100, maximum=1_000_000)
    width = size_param(settings, "width", 64, maximum=65536)
    layers = size_param(settings, "layers", 2, maximum=64)
    if width % HEADS:
        raise ValueError(f"`width` must be a multiple of {HEADS}, but got {width=}.")
    device = training_device()
    vocabulary, texts = _texts()
    train_ids = texts["train"].to(device)
    evaluation = {split: _windows(texts[split], context).to(device) for split in ("val", "test")}
    generator = torch.Generator().manual_seed(settings.seed)  # on the CPU on every device
    torch.manual_seed(settings.seed)
    model = CharTransformer(
        vocabulary=len(vocabulary), context=context, width=width, layers=layers
    ).to(device)
    optimizer, scheduler = settings.build(model.parameters(), steps_per_epoch=steps_per_epoch)
    offsets = torch.arange(context + 1, device=device)

    def loss_of(windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        logits = model(windows[:, :-1])
        return functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction=reduction
        )

    def run_epoch(after_batch: Any) -> float:
        model.train()
        total = torch.zeros((), device=device)
        for _ in range(steps_per_epoch):
            starts = torch.randint(
                len(train_ids) - context, (batch_size,), generator=generator
            ).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_of(train_ids[starts.unsqueeze(1) + offsets])
            loss.backward()
            optimizer.step()
            after_batch()
            total += loss.detach()
        return float(total) / steps_per_epoch

    def measure(split: str) -> dict[str, float]:
        windows = evaluation[split]
        model.eval()
        total = torch.zeros((), device=device, dtype=torch.float64)
        with torch.no_grad():
            for chunk in windows.split(EVALUATION_CHUNK):
                total += loss_of(chunk, reduction="sum").double()
        loss = float(total) / (windows.shape[0] * context)
        return {"loss": loss, "bits_per_char": loss / math.log(2)}

    train_loop(
        settings,
        optimizer,
        scheduler,
        reporter,
        run_epoch=run_epoch,
        measure=measure,
        model=model,
        generator=generator,
    )
