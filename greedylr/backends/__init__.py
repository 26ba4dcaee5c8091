"""Engines that run trials: Optuna, Ray Tune and Syne Tune (filled by later issues)."""

__all__: list[str] = []
