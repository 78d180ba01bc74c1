"""Hyper-parameter sweeps launched by Hydra (``sweep.py``): settings checked, run as cross_train run folders,
ranked in ``sweep.md``. See :mod:`minigpt4.sweep.run` for the sweep folder."""
from minigpt4.sweep.run import Options, run
from minigpt4.sweep.spec import SweepError

__all__ = ["Options", "SweepError", "run"]
