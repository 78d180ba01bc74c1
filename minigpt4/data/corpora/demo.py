"""The embedded default corpus: a small synthetic IEMOCAP, generated (seeded) on first use, read by the real
IEMOCAP reader.

Why the IEMOCAP raw layout: it has natural groups (sessions), evaluator votes (so multi-label works), dialogue
transcripts (context), dialogue videos cut by time segment and speaker side (the hardest frame path), and
4-class labels with a realistic imbalance; writing it exercises the same parser real data goes through.
Six sessions: 1-5 form the cross-validation pool (split ``train``), 6 is held out (split ``test``).

The corpus is media, and its features come from the zero-download extractors (``minigpt4.extract``), as a
real corpus's would: every utterance has a ``.wav`` whose prosody depends on its class (pitch level and
contour, loudness, speaking rate, voice harshness; the speaker's sex and per-utterance jitter are nuisance),
and each dialogue an ``.avi`` of two faces (skimage's astronaut photo) side by side, the speaker's half weakly
tinted by the class. Audio carries the most class information, the transcript names the emotion in about 40%
of utterances, video and face little. The extracted store (``store/``, frames included) is written once,
with the corpus, and cached with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile

from minigpt4.config import DataConfig
from minigpt4.data.corpora import iemocap
from minigpt4.data.corpora.common import CorpusError, ReadResult, label_setup, options
from minigpt4.data.jobs import sample_jobs
from minigpt4.extract import DEFAULTS, EXTRACTORS, build_extractors
from minigpt4.extract.run import extract_store
from minigpt4.features.store import default_cache_dir

SEED = 20240
MARKER = "demo.json"
SESSIONS = 6
TEST_SESSION = 6
DIALOGS = ("impro01", "impro02", "script01_1", "script02_1")
UTTERANCES_PER_DIALOG = 25
FPS = 10
FRAME = 128
"""Dialogue video frames are FRAME x FRAME; the speaker crop is FRAME/2 x FRAME/2 (64 x 64)."""
RATE = 16000
STORE = "store"
"""Feature store inside the corpus folder, extracted from its media when the corpus is generated."""
STORE_FRAME_SIZE = 32
CODE_PROBS = {"neu": 0.30, "exc": 0.15, "hap": 0.09, "ang": 0.18, "sad": 0.16, "fru": 0.05, "xxx": 0.06, "sur": 0.01}
"""Consensus codes; fru/xxx/sur fall outside 4-class, so ~90% of the 600 utterances load (hap+exc ~ neu)."""
PROSODY = {  # pitch factor, contour (semitones over the utterance), loudness, syllables/s, harshness
    "neu": (1.00, 0.0, 0.10, 4.0, 0.1), "hap": (1.40, 4.0, 0.22, 5.0, 0.2), "exc": (1.55, 5.0, 0.28, 5.5, 0.25),
    "ang": (1.25, -4.0, 0.40, 6.0, 0.7), "sad": (0.85, -2.0, 0.05, 2.5, 0.0), "fru": (1.15, -2.0, 0.25, 4.5, 0.4),
    "sur": (1.70, 8.0, 0.20, 4.0, 0.2), "xxx": (1.10, 0.0, 0.15, 4.0, 0.2)}
JITTER = {"pitch": 0.10, "loudness": 0.35, "rate": 0.15}
"""Per-utterance log-normal spread of each prosodic factor (what makes classes overlap)."""
BASE_F0 = {"F": 210.0, "M": 120.0}
LIGHT_JITTER = 6.0
"""Per-utterance lighting change of the speaker's half (per channel, grey levels): it hides the class tint from
colour statistics most of the time."""
NEIGHBOURS = {"neu": ("sad", "hap", "fru"), "hap": ("exc", "neu"), "exc": ("hap", "neu"), "ang": ("fru", "neu"),
              "sad": ("neu", "fru"), "fru": ("ang", "neu"), "sur": ("exc", "neu"), "xxx": ("neu",)}
BLEND_WITH = {"neu": ("sad", "hap", "ang"), "hap": ("neu", "sad"), "exc": ("neu", "ang"), "ang": ("sad", "neu"),
              "sad": ("neu", "ang")}
"""Second emotions a blended utterance may carry (each a different 4-class label from its consensus)."""
BLEND_PROB = 0.35
"""Share of utterances (of codes in BLEND_WITH) that blend two emotions: two of the three evaluators name both,
so the second label reaches ``min_votes`` = 2 and the multi-label set has two labels (~1 in 3 utterances)."""
BLEND_WEIGHT = 0.6
"""Strength of the second emotion's class signal in a blended utterance's features (the first has 1)."""
WORD = {"neu": "Neutral", "hap": "Happiness", "exc": "Excited", "ang": "Anger", "sad": "Sadness",
        "fru": "Frustration", "sur": "Surprise"}
TINT = {"neu": (0, 0, 0), "hap": (6, 5, -2), "exc": (6, 5, -2), "ang": (8, -2, -2), "sad": (-2, -1, 7),
        "fru": (4, 0, 4), "sur": (0, 6, 6), "xxx": (0, 0, 0)}
CUES = {
    "neu": ["I went to the office this morning.", "The meeting is at three.", "We should check the schedule.",
            "It is fine, I guess."],
    "hap": ["I am so happy about this!", "This is wonderful news.", "That makes me really glad."],
    "exc": ["Wow, this is amazing, I can't wait!", "We did it, this is great!", "That's fantastic!"],
    "ang": ["This is outrageous, I am furious.", "Stop it, I am so angry with you.", "How dare you do that!"],
    "sad": ["I miss him so much.", "I feel so sad and alone.", "Everything is falling apart."],
    "fru": ["Why does this never work?", "I have told you ten times already."],
    "sur": ["Really? I had no idea!", "What? Since when?"],
    "xxx": ["Well, you know how it is."],
}
PLAIN = ["Where did you put the keys?", "I don't know what to say.", "Let me think about it.",
         "Can we talk about this later?", "You said that yesterday.", "It's about the car.",
         "[LAUGHTER] Okay, okay.", "So what happens now?", "I was at the station.", "Tell me again."]


def _extractor_versions() -> tuple:

    return tuple((m, name, EXTRACTORS[name].version) for m, name in sorted(DEFAULTS.items()))


VERSION = "demo-" + hashlib.sha1(repr((SEED, SESSIONS, TEST_SESSION, DIALOGS, UTTERANCES_PER_DIALOG, FPS, FRAME,
                                       CODE_PROBS, PROSODY, JITTER, BASE_F0, LIGHT_JITTER, CUES, PLAIN, TINT, BLEND_WITH,
                                       BLEND_PROB, BLEND_WEIGHT, STORE_FRAME_SIZE,
                                       _extractor_versions())).encode()).hexdigest()[:10]
"""Cache folder name: changes whenever a generator parameter does, so a stale cached corpus is never read."""

def location(data_cfg: DataConfig) -> Path:
    """Where the demo corpus lives: ``data.root``, else ``<cache>/<VERSION>``."""
    return Path(data_cfg.root).expanduser() if data_cfg.root else default_cache_dir() / VERSION


def root(data_cfg: DataConfig) -> Path:
    """The demo corpus folder, generated there on first use."""
    folder = location(data_cfg)
    if not (folder / MARKER).is_file():
        generate(folder)
    return folder


def read(data_cfg: DataConfig) -> ReadResult:
    options(data_cfg, {}, "demo")
    label_setup(data_cfg, {"default": "4class", "4class": "4class"}, "demo")
    return iemocap.read(_DemoConfig(data_cfg, root(data_cfg)), label_set_name="demo")


class _DemoConfig:
    """``data_cfg`` seen by the IEMOCAP reader: the demo folder, the 4-class setup, session 6 as test."""

    def __init__(self, base: Any, folder: Path) -> None:
        self._base = base
        self.root = str(folder)
        self.labels = "4class"
        self.options = {"test_sessions": [TEST_SESSION]}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def generate(folder: str | Path) -> Path:
    """Write the demo corpus into ``folder`` atomically (temp folder, then rename); deterministic."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        counts = _write(tmp, np.random.default_rng(SEED))
        _extract(tmp)
        (tmp / MARKER).write_text(json.dumps({"version": VERSION, "seed": SEED, "consensus_counts": counts}, indent=1))
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / MARKER).is_file():  # not a concurrent generator finishing first
                raise CorpusError(f"cannot create the demo corpus at {folder}: the folder exists but is not a "
                                  f"demo corpus ({MARKER} missing); remove it or set data.root elsewhere") from None
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _extract(folder: Path) -> None:
    """Extract the store from the corpus's media with the default extractors (two processes when the
    machine has two cores); every utterance must yield every feature."""

    samples = iemocap.read(_DemoConfig(_Plain(), folder), label_set_name="demo").samples
    extractors = build_extractors(build_spec())
    summary = extract_store(sample_jobs(samples), folder / STORE, extractors, workers=min(2, os.cpu_count() or 1),
                            frames="first", frame_size=STORE_FRAME_SIZE)
    if summary["failed"]:
        raise CorpusError(f"demo corpus at {folder}: extraction failed for {len(summary['failed'])} utterance(s), "
                          f"e.g. {next(iter(summary['failed'].items()))}")


def build_spec() -> dict[str, str]:
    """The extractors the demo store is made with: the zero-download defaults."""

    return dict(DEFAULTS)


def store_dims() -> dict[str, int]:
    """Widths of the features in the demo store (known from its extractors, before it is generated)."""

    return {m: e.dim for m, e in build_extractors(build_spec()).items() if m != "text"}


class _Plain:
    """Reader settings used while generating: every utterance of every session, transcripts not required."""

    label_mode = "single"
    keep_undecided = True
    transcript = False
    min_votes = 2


def _write(out: Path, rng: np.random.Generator) -> dict[str, int]:
    codes = list(CODE_PROBS)
    probs = np.array(list(CODE_PROBS.values()))
    counts: dict[str, int] = {}
    face = _face()
    for session in range(1, SESSIONS + 1):
        for d, dialog in enumerate(DIALOGS):
            actor = "FM"[d % 2]
            name = f"Ses{session:02d}{actor}_{dialog}"
            base = out / f"Session{session}" / "dialog"
            for sub in ("EmoEvaluation", "transcriptions", "avi/DivX"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            wav_dir = out / f"Session{session}" / "sentences" / "wav" / name
            wav_dir.mkdir(parents=True)
            evaluation = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            transcript = []
            turns = []
            t, index = 0.3, {"F": 0, "M": 0}
            for u in range(UTTERANCES_PER_DIALOG):
                code = codes[rng.choice(len(codes), p=probs)]
                second = _second_emotion(code, rng)
                counts[code] = counts.get(code, 0) + 1
                speaker = "FM"[u % 2] if rng.random() < 0.85 else "FM"[(u + 1) % 2]
                utt = f"{name}_{speaker}{index[speaker]:03d}"
                index[speaker] += 1
                start, end = t, t + rng.uniform(0.5, 0.9)
                t = end + rng.uniform(0.1, 0.3)
                turns.append((start, end, utt, code))
                evaluation += _block(utt, code, second, start, end, speaker, rng)
                text = rng.choice(CUES[code]) if rng.random() < 0.4 else rng.choice(PLAIN)
                transcript.append(f"{utt} [{start:08.4f}-{end:08.4f}]: {text}")
                _wav(wav_dir / f"{utt}.wav", code, second, speaker, end - start, rng)
            (base / "EmoEvaluation" / f"{name}.txt").write_text("\n".join(evaluation) + "\n")
            (base / "transcriptions" / f"{name}.txt").write_text("\n".join(transcript) + "\n")
            _video(base / "avi" / "DivX" / f"{name}.avi", turns, t + 0.3, face, rng)
    return counts


def _wav(path: Path, code: str, second: str | None, speaker: str, seconds: float, rng: np.random.Generator) -> None:
    """A voiced utterance: syllable-shaped bursts of a harmonic tone whose pitch level and contour,
    loudness, rate and harshness follow the class (a blend mixes in the second emotion's with weight
    ``BLEND_WEIGHT``), with log-normal jitter and a little breath noise."""

    params = np.array(PROSODY[code])
    if second is not None:
        params = (params + BLEND_WEIGHT * np.array(PROSODY[second])) / (1 + BLEND_WEIGHT)
    pitch, contour, loudness, rate, harsh = params
    f0 = BASE_F0[speaker] * pitch * np.exp(JITTER["pitch"] * rng.standard_normal())
    loudness *= np.exp(JITTER["loudness"] * rng.standard_normal())
    rate *= np.exp(JITTER["rate"] * rng.standard_normal())
    t = np.arange(int(seconds * RATE)) / RATE
    freq = f0 * 2 ** (contour * (t / seconds - 0.5) / 12)
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    voice = sum((1.0 / k) ** (1.5 - harsh) * np.sin(k * phase) for k in range(1, 9))
    syllables = np.clip(np.sin(np.pi * rate * t + rng.uniform(0, np.pi)), 0, None) ** 0.7
    audio = loudness * syllables * voice / 2.0 + 0.003 * rng.standard_normal(len(t))
    soundfile.write(str(path), np.clip(audio, -1, 1).astype(np.float32), RATE, subtype="PCM_16")


def _face() -> np.ndarray:
    """A real face for the detector and expression network: skimage's astronaut photo, head and shoulders."""
    from skimage import data  # heavy import: only generating the demo corpus needs it

    side = FRAME // 2 - 8
    return cv2.resize(data.astronaut()[50:220, 160:310], (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


def _second_emotion(code: str, rng: np.random.Generator) -> str | None:
    """The second emotion of a blended utterance (``BLEND_PROB`` of those whose code can blend), else None."""
    if code not in BLEND_WITH or rng.random() >= BLEND_PROB:
        return None
    return str(rng.choice(BLEND_WITH[code]))


def _block(utt: str, code: str, second: str | None, start: float, end: float, speaker: str,
           rng: np.random.Generator) -> list[str]:
    """An EmoEvaluation block: 3 external evaluators plus the actor.

    Plain utterance: 2 or 3 evaluators give the consensus, the others a single neighbouring emotion (one vote,
    below ``min_votes``: a single label). Blend: every evaluator gives the consensus and two also name the second
    emotion (two votes: a two-label set).
    """
    if code == "xxx":
        votes = [[c] for c in rng.choice(["neu", "fru", "sad", "ang"], size=3, replace=False)]
    elif second is not None:
        votes = [[code, second], [code, second], [code]]
        rng.shuffle(votes)
    else:
        agree = 3 if rng.random() < 0.6 else 2
        votes = [[code] for _ in range(agree)] + [[str(rng.choice(NEIGHBOURS[code]))] for _ in range(3 - agree)]
    vad = rng.uniform(1.5, 4.5, size=3)
    lines = [f"[{start:.4f} - {end:.4f}]\t{utt}\t{code}\t[{vad[0]:.4f}, {vad[1]:.4f}, {vad[2]:.4f}]"]
    lines += [f"C-E{i + 1}:\t{' '.join(WORD[c] + ';' for c in v)}\t()" for i, v in enumerate(votes)]
    lines.append(f"C-{speaker}1:\t{WORD[votes[0][0]]};\t()")
    lines += [f"A-E{i + 1}:\tval {rng.integers(1, 6)}; act {rng.integers(1, 6)}; dom  {rng.integers(1, 6)};\t()"
              for i in range(2)]
    return lines + [""]


def _video(path: Path, turns: list[tuple[float, float, str, str]], duration: float, face: np.ndarray,
           rng: np.random.Generator) -> None:
    """Dialogue video: two faces side by side; the speaker's half is tinted by the utterance's class."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"DIVX"), FPS, (FRAME, FRAME))
    if not writer.isOpened():
        raise CorpusError(f"cannot write demo video {path}: OpenCV has no DIVX encoder")
    base = np.full((FRAME, FRAME, 3), 110, np.float32)
    top, side = FRAME // 4 + 4, face.shape[0]
    base[top: top + side, 4: 4 + side] = face
    base[top: top + side, FRAME // 2 + 4: FRAME // 2 + 4 + side] = face[:, ::-1] * (0.9, 1.0, 1.1)
    noise = rng.normal(0, 4, (8, *base.shape)).astype(np.float32)  # a pool: drawing per frame is the slow part
    light = {utt: rng.normal(0, LIGHT_JITTER, 3) for _, _, utt, _ in turns}  # per-utterance lighting nuisance
    for i in range(int(duration * FPS) + 1):
        now = i / FPS
        frame = base + noise[rng.integers(len(noise))]
        for start, end, utt, code in turns:
            if start <= now < end:
                cols = slice(0, FRAME // 2) if iemocap.side(utt) == "left" else slice(FRAME // 2, FRAME)
                frame[FRAME // 4: FRAME - FRAME // 4, cols] += np.add(TINT[code], light[utt])
        writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
