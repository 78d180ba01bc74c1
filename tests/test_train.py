"""Training loop, checkpoints, distribution and shipped configs, on the tiny model and the demo corpus (CPU)."""
from __future__ import annotations

import csv
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from payloads import Payload
from safetensors.torch import load_file, save_file

from minigpt4.config import ConfigError
from minigpt4.data.collate import Collator
from minigpt4.data.pipeline import prepare_data
from minigpt4.data.run_config import load_config
from minigpt4.models import checkpoint as ckpt
from minigpt4.models.build import build_model
from minigpt4.runtime.errors import CheckpointError
from minigpt4.training.engine import lr_lambda
from minigpt4.training.loop import fit
from minigpt4.training.sampling import WeightedShardSampler

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["run.eval_every=0", "eval.max_samples=16", "run.log_every=1", "run.warmup_steps=2"]


def cfg_for(out: Path, *overrides: str):
    return load_config(ROOT / "train_configs" / "demo.yaml", [f"run.output_dir={out}", *QUICK, *overrides])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / ckpt.WEIGHTS))


def metric(out: Path, name: str) -> dict[int, float]:
    with (out / "metrics.csv").open() as f:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["name"] == name}


def test_loss_falls_and_run_folder_layout(tmp_path: Path) -> None:
    final = fit(cfg_for(tmp_path, "run.max_steps=40", "run.lr=1e-2", "run.log_every=8", "run.eval_every=20",
                        "run.keep_last=1"))
    loss = metric(tmp_path, "train/loss")
    assert loss[40] < loss[8] - 1.0, loss
    assert set(metric(tmp_path, "val/accuracy")) == {20, 40}
    assert final == tmp_path / "final"
    assert {p.name for p in final.iterdir()} == {"trainable.safetensors", "config.yaml", "tokenizer"}
    for name in ("config.yaml", "train.log", "metrics.csv", "tb"):
        assert (tmp_path / name).exists(), name
    steps = [p.name for p in ckpt.step_folders(tmp_path / "checkpoints")]
    assert "step_40" in steps and len(steps) <= 2  # keep_last=1 plus the best
    assert (tmp_path / "checkpoints" / "step_40" / "state.pt").is_file()
    assert not list((tmp_path / "checkpoints").glob(".*"))  # no staging leftovers
    # final/ is a checkpoint other entry points load, tokenizer included
    cfg = load_config(final / "config.yaml", [f"model.checkpoint={final}"])
    build_model(cfg)


def test_average_last_publishes_the_mean_of_the_last_checkpoints(tmp_path: Path) -> None:
    final = fit(cfg_for(tmp_path, "run.max_steps=30", "run.lr=1e-2", "run.eval_every=10", "run.keep_last=1",
                        "run.average_last=2"))
    folders = {p.name: p for p in ckpt.step_folders(tmp_path / "checkpoints")}
    assert {"step_20", "step_30"} <= set(folders)  # both kept although keep_last=1
    a, b, got = weights(folders["step_20"]), weights(folders["step_30"]), weights(final)
    assert got.keys() == a.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    for key in a:
        torch.testing.assert_close(got[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-6)
    assert "mean of step_20, step_30, val accuracy" in (tmp_path / "train.log").read_text()
    only = fit(cfg_for(tmp_path / "last", "run.max_steps=4", "run.average_last=2"))  # eval_every=0: the last only
    assert "(mean of step_4, val accuracy" in (tmp_path / "last" / "train.log").read_text()
    assert all(torch.equal(weights(only)[k], v) for k, v in weights(tmp_path / "last" / "checkpoints" / "step_4").items())


def test_average_every_averages_epochs_without_validating_each(tmp_path: Path) -> None:
    final = fit(cfg_for(tmp_path, "run.max_steps=12", "run.eval_every=0", "run.average_every=4", "run.keep_last=1",
                        "run.average_last=2"))
    assert set(metric(tmp_path, "val/accuracy")) == {12}  # validated at the end only
    folders = {p.name: p for p in ckpt.step_folders(tmp_path / "checkpoints")}
    assert {"step_8", "step_12"} <= set(folders)  # both kept although keep_last=1, with no validation at step 8
    a, b, got = weights(folders["step_8"]), weights(folders["step_12"]), weights(final)
    for key in a:
        torch.testing.assert_close(got[key], (a[key] + b[key]) / 2, rtol=0, atol=1e-6)
    assert "(mean of step_8, step_12, val accuracy" in (tmp_path / "train.log").read_text()


def test_fused_optimizer_gives_the_loops_update_up_to_rounding(tmp_path: Path) -> None:
    # One step: later steps would amplify the rounding through the gradients, as any change of kernel does.
    loop = fit(cfg_for(tmp_path / "loop", "run.max_steps=1", "run.lr=1e-2"))
    fused = fit(cfg_for(tmp_path / "fused", "run.max_steps=1", "run.lr=1e-2", "run.fused_optimizer=true"))
    state = torch.load(tmp_path / "fused" / "checkpoints" / "step_1" / "state.pt", weights_only=False)
    assert all(group["fused"] for group in state["optimizer"]["param_groups"])
    a, b = weights(loop), weights(fused)
    assert a.keys() == b.keys()
    for key in a:  # another kernel: equal up to rounding, not necessarily in the last bits
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6)


def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ("run.max_steps=6", "run.save_every=3", "run.grad_accum=2", "run.batch_size=4")
    fit(cfg_for(tmp_path / "a", *args))
    calls = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_

    def crash_at_step_5(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated crash")
        return clip(*a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", crash_at_step_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(cfg_for(tmp_path / "b", *args))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    assert [p.name for p in ckpt.step_folders(tmp_path / "b" / "checkpoints")] == ["step_3"]
    fit(cfg_for(tmp_path / "b", *args, "run.resume=true"))
    a, b = weights(tmp_path / "a" / "checkpoints" / "step_6"), weights(tmp_path / "b" / "checkpoints" / "step_6")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert metric(tmp_path / "a", "train/loss") == metric(tmp_path / "b", "train/loss")


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config(None, ["eval.max_samples=16"])
    model = build_model(cfg)
    data = prepare_data(cfg, model)
    ds = data.dataset("val", cfg, model)
    batch = Collator(model.tokenizer.pad_token_id, "train")([ds[i] for i in range(4)])
    return cfg, model, batch


def test_checkpoint_roundtrip_gives_identical_logits(tiny, tmp_path: Path) -> None:
    cfg, model, batch = tiny
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
        expected = model(batch).logits
    folder = ckpt.write_checkpoint(tmp_path / "ck", model, cfg)
    for source in (folder, folder / ckpt.WEIGHTS):
        loaded = build_model(OmegaConf.merge(cfg, {"model": {"checkpoint": str(source)}}))
        with torch.no_grad():
            assert torch.equal(loaded(batch).logits, expected)


def test_atomic_write_leaves_no_partial_folder(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, model, _ = tiny
    good = ckpt.write_checkpoint(tmp_path / "step_1", model, cfg, state={"step": 1})

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", fail)
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(tmp_path / "step_2", model, cfg, state={"step": 2})
    with pytest.raises(OSError, match="disk full"):
        ckpt.write_checkpoint(good, model, cfg, state={"step": 9})  # an existing checkpoint survives intact
    assert not (tmp_path / "step_2").exists()
    assert [p.name for p in ckpt.step_folders(tmp_path)] == ["step_1"]
    monkeypatch.undo()
    assert ckpt.load_state(good)["step"] == 1


def test_a_full_disk_is_an_os_error_naming_the_file(tiny, tmp_path: Path) -> None:
    cfg, model, _ = tiny
    tmp = ckpt.stage(tmp_path / "step_1")
    (tmp / ckpt.STATE).symlink_to("/dev/full")  # every write there fails with ENOSPC
    with pytest.raises(OSError) as err:
        ckpt.write_checkpoint(tmp_path / "step_1", model, cfg, state={"step": 1}, tmp=tmp)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp / ckpt.STATE)
    assert not (tmp_path / "step_1").exists()


def test_coverage_error_names_missing_and_unexpected_keys(tiny, tmp_path: Path) -> None:
    _, model, _ = tiny
    state = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    dropped = sorted(state)[0]
    del state[dropped]
    state["stray.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError) as err:
        ckpt.load_trainable(model, tmp_path / "w.safetensors")
    assert dropped in str(err.value) and "stray.weight" in str(err.value)
    with pytest.raises(FileNotFoundError, match="model.checkpoint"):
        ckpt.load_trainable(model, tmp_path / "nothing")


def test_an_integer_tensor_is_not_loaded_into_a_float_parameter(tiny, tmp_path: Path) -> None:
    _, model, _ = tiny
    state = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.ones_like(state[name], dtype=torch.int64)
    save_file(state, str(tmp_path / "w.safetensors"))
    before = model.trainable_state_dict()[name].clone()
    with pytest.raises(CheckpointError, match=rf"w.safetensors: {name} holds torch.int64, the model expects "
                                              r"torch.float32"):
        ckpt.load_trainable(model, tmp_path / "w.safetensors")
    assert torch.equal(model.trainable_state_dict()[name], before)


def test_lr_schedule_and_balanced_sampler() -> None:
    f = lr_lambda(total_steps=100, warmup=10, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.1) and f(55) == pytest.approx(0.55)
    labels = ["a"] * 90 + ["b"] * 10
    full = list(WeightedShardSampler(labels, seed=3, rank=0, world=1))
    shards = [list(WeightedShardSampler(labels, seed=3, rank=r, world=2)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(full) and shards[0] == full[0::2]
    assert 0.3 < sum(labels[i] == "b" for i in full) / len(full) < 0.7  # minority upweighted to about half


def shipped_configs() -> list[Path]:
    return sorted((ROOT / "train_configs").glob("*.yaml")) + sorted((ROOT / "eval_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_config_validates(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path, allow_missing=True)
    assert cfg.run.output_dir
    if path.parent.name == "train_configs":
        assert cfg.run.max_steps > 0 or cfg.run.epochs > 0  # a training length: steps, or epochs when steps is 0
    missing = [k for k in ("model.llm.path", "model.vision.checkpoint", "data.root", "model.checkpoint")
               if OmegaConf.is_missing(cfg, k)]
    if not missing:
        return
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert all(k in str(err.value) for k in missing)
    with pytest.raises(ConfigError) as err:
        fit(OmegaConf.merge(cfg, {"run": {"output_dir": str(tmp_path)}}))
    assert all(k in str(err.value) for k in missing)
    assert not any(tmp_path.iterdir())  # failed before anything was built or written


def run_train(args: list[str], nproc: int = 1, env: dict[str, str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] \
        if nproc > 1 else [sys.executable]
    proc = subprocess.run([*launcher, str(ROOT / "train.py"), "--cfg-path", str(ROOT / "train_configs/demo.yaml"),
                           *QUICK, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    assert proc.returncode == 0 or not check, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path: Path) -> None:
    # face and video are dropped: their projectors get no gradient, which DDP must be told about
    common = ["run.max_steps=3", "run.grad_accum=2", "data.modalities=[image,audio,text]"]
    run_train([f"run.output_dir={tmp_path / 'two'}", "run.batch_size=2", *common], nproc=2)
    fit(cfg_for(tmp_path / "one", "run.batch_size=4", *common))
    one = weights(tmp_path / "one" / "checkpoints" / "step_3")
    two = weights(tmp_path / "two" / "checkpoints" / "step_3")
    # same data, same start: the first logged loss (all-reduced over ranks) agrees to float precision
    assert metric(tmp_path / "two", "train/loss")[1] == pytest.approx(metric(tmp_path / "one", "train/loss")[1],
                                                                      rel=1e-5)
    # Adam's first steps divide by tiny second moments, so reduction-order noise grows to ~1% of the movement;
    # a wrong batch split or a missing all-reduce moves parameters by as much as training does
    start = build_model(load_config(None)).trainable_state_dict()
    diff = sum(float((one[k] - two[k]).abs().sum()) for k in one)
    moved = sum(float((one[k] - start[k]).abs().sum()) for k in one)
    assert moved > 0 and diff / moved < 0.05, (diff, moved)


@pytest.mark.slow
def test_deepspeed_zero2_steps_on_cpu_and_its_resume_state_runs_no_code(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = [f"run.output_dir={out}", "run.deepspeed=train_configs/deepspeed_zero2.json", "run.max_steps=3",
            "run.save_every=2", "run.keep_last=5"]
    run_train(args, env={"DS_ACCELERATOR": "cpu"})
    assert (out / "checkpoints" / "step_2" / "deepspeed").is_dir()
    losses = metric(out, "train/loss")
    assert sorted(losses) == [1, 2, 3] and all(v == v for v in losses.values())
    assert (out / "final" / ckpt.WEIGHTS).is_file()

    # a payload planted in DeepSpeed's own model-states file of the newest checkpoint, the one a resume reads:
    # it is refused without being unpickled
    (states,) = (ckpt.step_folders(out / "checkpoints")[-1] / "deepspeed").rglob("*model_states.pt")  # resumed
    marker = tmp_path / "payload_ran"
    torch.save({**torch.load(states, weights_only=False), "payload": Payload(marker)}, states)
    proc = run_train([*args, "run.resume=true"], env={"DS_ACCELERATOR": "cpu"}, check=False)
    assert proc.returncode != 0 and not marker.exists()
    assert "holds more than tensors, plain values and DeepSpeed's own state classes" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_multi_label_run_saves_the_threshold_chosen_on_validation(tmp_path: Path) -> None:
    import json

    from minigpt4.evaluation.scoring import DECISION_FILE, THRESHOLD_GRID

    final = fit(cfg_for(tmp_path, "run.max_steps=3", "data.label_mode=multi", "data.modalities=[audio]"))
    decision = json.loads((final / DECISION_FILE).read_text())
    assert decision["source"] == "validation" and decision["n_val"] == 16
    assert decision["threshold"] in THRESHOLD_GRID and 0 <= decision["val_samples_f1"] <= 1
