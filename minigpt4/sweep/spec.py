"""What a sweep runs: the recipe, its fixed overrides, the swept keys (Hydra's override grammar) and how.

The swept keys come from ``key=a,b`` on the command line and from a ``sweep:`` block in the config file; the
block is the only part of the file the project's config schema does not know, so it is cut off here and the
rest is written to the sweep folder as ``recipe.yaml``, the config file of every setting.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from minigpt4.config import ConfigError
from minigpt4.data.run_config import load_config

SEARCHES = ("grid", "optuna")
LAUNCHERS = ("local", "submitit-local", "slurm")


class SweepError(RuntimeError):
    """A sweep cannot start or continue; the message says why and what to do."""


@dataclass
class SweepSpec:
    """The ``sweep:`` block of a config file (every field can also be given as a flag of sweep.py)."""

    params: dict[str, str] = field(default_factory=dict)
    """Swept key -> values in Hydra's sweep syntax: ``1e-3,1e-2``, ``choice(8,16)``, ``range(1,4)``; for
    ``search: optuna`` also ``interval(1e-4,1e-2)`` and ``tag(log,interval(1e-4,1e-2))``."""
    output_dir: str | None = None
    """The sweep folder (default ``runs/sweeps/<config file name>``)."""
    cross: bool = False
    """Judge every setting by a whole cross-validation (fold mean ± std) instead of one training run."""
    jobs: int = 1
    """Settings at once; above 1 each runs in its own process with an equal share of the cores."""
    fold_jobs: int = 0
    """Folds of one setting at once (cross_train.py's ``--jobs``; 0: as many as its cores hold)."""
    launcher: str = "local"
    """``local`` (this machine), ``slurm`` (hydra-submitit-launcher) or ``submitit-local`` (the same
    submission path through submitit's local executor)."""
    launcher_params: dict[str, Any] = field(default_factory=dict)
    """Parameters of the submitit launcher (``partition``, ``gpus_per_node``, ``timeout_min`` ...)."""
    search: str = "grid"
    """``grid`` (every combination) or ``optuna`` (hydra-optuna-sweeper's TPE, ``trials`` settings)."""
    trials: int = 8
    """Optuna: the trial budget."""
    seed: int = 0
    """Optuna: the sampler's seed (with the same results, a rerun proposes the same settings)."""


def read_recipe(path: Path) -> tuple[dict[str, Any], DictConfig]:
    """The config file split into its ``sweep:`` block and everything else (a plain run config)."""
    if not path.is_file():
        raise SweepError(f"config file not found: {path}")
    conf = OmegaConf.load(path)
    block = OmegaConf.to_container(conf.pop("sweep")) if "sweep" in conf else {}
    if not isinstance(block, dict):
        raise SweepError(f"{path}: sweep: must be a mapping of sweep settings, not {block!r}")
    return block, conf


def make_spec(block: dict[str, Any], flags: dict[str, Any], source: str) -> SweepSpec:
    """The file's ``sweep:`` block updated by the flags given on the command line, type-checked."""
    try:
        spec = OmegaConf.merge(OmegaConf.structured(SweepSpec), block, {k: v for k, v in flags.items()
                                                                        if v is not None})
    except OmegaConfBaseException as err:
        raise SweepError(f"{source}: sweep: {err}") from None
    checks = {"search": (spec.search in SEARCHES, f"one of {', '.join(SEARCHES)}"),
              "launcher": (spec.launcher in LAUNCHERS, f"one of {', '.join(LAUNCHERS)}"),
              "jobs": (spec.jobs >= 1, "at least 1"), "fold_jobs": (spec.fold_jobs >= 0, "at least 0"),
              "trials": (spec.trials >= 1, "at least 1")}
    for key, (ok, expected) in checks.items():
        if not ok:
            raise SweepError(f"{source}: sweep.{key}={spec[key]!r}: expected {expected}")
    return OmegaConf.to_object(spec)


def parse(overrides: Sequence[str], source: str) -> list[Override]:
    """``key=value`` strings through Hydra's override grammar (the one ``--multirun`` reads)."""
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise SweepError(f"{source}: {err}") from None


def split_overrides(cli: Sequence[str]) -> tuple[list[str], list[str]]:
    """Command-line overrides: fixed ones (given to the config loader as typed, exactly as train.py takes
    them) and swept ones (a comma list or a sweep function)."""
    swept = {o.input_line for o in parse(cli, "command line") if o.is_sweep_override()}
    return [o for o in cli if o not in swept], [o for o in cli if o in swept]


def sweep_params(spec: SweepSpec, swept_cli: Sequence[str]) -> list[str]:
    """The swept keys as Hydra overrides: the ``sweep:`` block's, replaced key by key by the command line's."""
    params = {k: f"{k}={v}" for k, v in spec.params.items()}
    params |= {o.split("=", 1)[0]: o for o in swept_cli}
    if not params:
        raise SweepError("nothing to sweep: give key=a,b on the command line or a sweep: params: block")
    for key in params:
        if key == "run.output_dir" or key.startswith("hydra"):
            raise SweepError(f"{key} cannot be swept: every setting gets its own folder under the sweep folder")
    return list(params.values())


def candidates(override: Override) -> list[str]:
    """Values of one swept key worth checking before anything runs: every grid value, an interval's ends."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        ends = [value.start, value.end]
        return [str(int(v) if "int" in value.tags else v) for v in ends]
    if isinstance(value, (ChoiceSweep, RangeSweep)) or override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def grid(params: Sequence[str], search: str) -> Iterator[list[str]]:
    """Every combination a grid runs; for a search, every candidate value of each key with the other keys
    at their first value (each value the search may pick is checked once)."""
    parsed = parse(params, "sweep parameters")
    keys = [o.key_or_group for o in parsed]
    values = [candidates(o) for o in parsed]
    if search == "grid":
        for o in parsed:
            if isinstance(o.value(), IntervalSweep):
                raise SweepError(f"{o.input_line}: an interval has no grid; list values (a,b,c) or use "
                                 f"--search optuna")
        for combo in itertools.product(*values):
            yield [f"{k}={v}" for k, v in zip(keys, combo)]
        return
    first = [v[0] for v in values]
    for i, options in enumerate(values):
        for option in options:
            yield [f"{k}={option if j == i else first[j]}" for j, k in enumerate(keys)]


def check_settings(recipe: Path, fixed: Sequence[str], params: Sequence[str], search: str) -> int:
    """Load every setting's config as its run will (schema, types, ranges) before any run starts; the
    number of settings checked."""
    count = 0
    for setting in grid(params, search):
        try:
            load_config(recipe, [*fixed, *setting])
        except ConfigError as err:
            raise SweepError(f"setting {' '.join(setting)}: {err}") from None
        count += 1
    return count
