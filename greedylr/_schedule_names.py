"""The registered schedules' names, known without importing torch.

The command line lists them in its help and checks ``--schedule`` before anything else runs;
:func:`greedylr.schedulers.list_schedules` (the registry, which imports torch) holds the same
names (a test checks it).
"""

SCHEDULE_NAMES = (
    "constant",
    "constant_with_warmup",
    "cosine",
    "cosine_warm_restarts",
    "exponential",
    "greedylr",
    "linear",
    "multistep",
    "onecycle",
    "plateau",
    "polynomial",
    "step",
    "wsd",
)
"""Sorted, as :func:`greedylr.schedulers.list_schedules` returns them."""
