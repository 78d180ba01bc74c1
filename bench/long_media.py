"""Peak memory and time of reading 30 minutes of audio (a 4 MB upload) with and without the duration cap.

    python bench/long_media.py [--minutes 30] [--cap 60]

Writes an audio-only AAC ``.mp4`` of ``--minutes``, then decodes it in a fresh process per setting, sampling
the process's resident memory every 5 ms: ``decode_clip`` with ``max_seconds=--cap`` (the page's default) and
without a cap (what every clip got before the cap existed). Both runs read the same file. Last line:
``ratio: R`` (peak memory growth without the cap over with it).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK = """
import os, sys, threading, time
from minigpt4.extract.media import ClipTooLong, decode_clip
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
peak = [0]
def watch():
    while True:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
base = rss()
threading.Thread(target=watch, daemon=True).start()
start = time.perf_counter()
cap = float(sys.argv[2])
try:
    decode_clip(sys.argv[1], max_seconds=cap or None)
except ClipTooLong as err:
    print(err, file=sys.stderr)
seconds = time.perf_counter() - start
time.sleep(0.05)
print((peak[0] - base) / 2**20, seconds)
"""


def decode_peak(path: Path, max_seconds: float) -> tuple[float, float]:
    """(peak RSS growth in MiB, seconds) of decoding ``path`` under ``max_seconds`` (0: no cap), in a fresh
    process so earlier allocations do not hide the peak."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(path), str(max_seconds)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    grown, seconds = map(float, out.stdout.split())
    return grown, seconds


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--cap", type=float, default=60.0, help="max_seconds of the capped run")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO / "tests"))
    from media_clips import write_audio  # the test suite's clip writer: the bench reads what the tests read

    with tempfile.TemporaryDirectory() as folder:
        path = write_audio(Path(folder) / "long.mp4", args.minutes * 60)
        print(f"{args.minutes:g} min of audio, {path.stat().st_size / 2**20:.1f} MiB")
        capped, capped_s = decode_peak(path, args.cap)
        uncapped, uncapped_s = decode_peak(path, 0)
    print(f"{'setting':<20}{'peak RSS growth MiB':>22}{'seconds':>10}")
    print(f"{f'cap {args.cap:g} s':<20}{capped:>22.1f}{capped_s:>10.2f}")
    print(f"{'no cap':<20}{uncapped:>22.1f}{uncapped_s:>10.2f}")
    print(f"ratio: {uncapped / max(capped, 1e-3):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
