"""Do the demo's features depend on the CPU's SIMD kernels? The check behind the README's reproducibility
section: why another machine's demo figures differ from this one's.

    python bench/simd_kernels.py [--clips 12]

Prints the first 16 hex digits of the sha256 of the demo store's arrays (compare them with another
machine's), then re-extracts the first ``--clips`` utterances of the demo corpus in a child process under each
kernel setting and compares them with the store: clips whose features are bitwise equal, and the largest
absolute difference, per modality. The settings: this machine's own kernels (must reproduce the store
bit for bit); numpy's OpenBLAS forced to its SSE3 kernels (``OPENBLAS_CORETYPE=Prescott``), as on a CPU
that OpenBLAS drives with other kernels; torch's kernels without AVX (``ATEN_CPU_CAPABILITY=default``,
``ONEDNN_MAX_CPU_ISA=SSE41``), as on a CPU with another vector width. The last line names the modalities
whose features change with the kernels.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from minigpt4.data.corpora import demo  # noqa: E402  (the repository root is put on the path first)
from minigpt4.data.jobs import sample_jobs  # noqa: E402
from minigpt4.extract import build_extractors, extract_clip  # noqa: E402
from minigpt4.data.run_config import load_config  # noqa: E402
from minigpt4.features.store import PackedFeatureStore  # noqa: E402

MODALITIES = ("audio", "face", "video")
"""The demo store's extracted features (frames are decoded pixels, not computed)."""
SETTINGS = {
    "this machine's kernels": {},
    "numpy OpenBLAS SSE3 kernels": {"OPENBLAS_CORETYPE": "Prescott"},
    "torch kernels without AVX": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def corpus_folder() -> Path:
    """The demo corpus (generated on first use), as every entry point finds it."""
    return demo.root(load_config(None).data)


def store_digests(store: Path) -> dict[str, str]:
    """First 16 hex digits of each packed array's sha256 (the figures the README lists)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in sorted(store.glob("*.npy"))}


def extract_first(clips: int, out: Path) -> None:
    """Child process: extract the first ``clips`` utterances as the store's workers do (1 torch thread)."""
    torch.set_num_threads(1)
    samples = demo.read(load_config(None).data).samples
    extractors = {m: e for m, e in build_extractors(demo.build_spec()).items() if m in MODALITIES}
    arrays = {}
    for job in sample_jobs(samples)[:clips]:
        features = extract_clip(job.path, extractors, **job.decode).features
        arrays |= {f"{m}/{job.clip_id}": features[m] for m in MODALITIES}
    np.savez(out, **arrays)


def compare(extracted: Path, store: PackedFeatureStore) -> dict[str, tuple[int, int, float]]:
    """Per modality: (bitwise-equal clips, clips, max |difference|) of a child's extraction against the store."""
    data = np.load(extracted)
    out = {}
    for m in MODALITIES:
        keys = [k for k in data.files if k.startswith(f"{m}/")]
        pairs = [(data[k], store.get(m, k.split("/", 1)[1])) for k in keys]
        equal = sum(np.array_equal(a.reshape(b.shape), b) for a, b in pairs)
        diff = max(float(np.abs(a.reshape(b.shape).astype(np.float64) - b).max()) for a, b in pairs)
        out[m] = (equal, len(pairs), diff)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=12, help="utterances re-extracted under each setting")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        extract_first(args.clips, args.child)
        return 0
    folder = corpus_folder()
    print(f"demo corpus {folder}")
    for name, digest in store_digests(folder / demo.STORE).items():
        print(f"  store/{name}: {digest}")
    store = PackedFeatureStore(folder / demo.STORE)
    print(f"\n| kernels | {' | '.join(MODALITIES)} |\n|---|---|---|---|")
    dependent = set()
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in SETTINGS.items():
            out = Path(tmp) / "x.npz"
            subprocess.run([sys.executable, __file__, "--clips", str(args.clips), "--child", str(out)],
                           check=True, env=os.environ | env)
            result = compare(out, store)
            dependent |= {m for m, (equal, n, _) in result.items() if env and equal < n}
            print(f"| {name} | " + " | ".join(f"{e}/{n} equal, max diff {d:.2g}" for e, n, d in result.values())
                  + " |", flush=True)
    print(f"kernel-dependent: {', '.join(m for m in MODALITIES if m in dependent) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
