"""The embedded default corpus: a small synthetic IEMOCAP, generated (seeded) on first use, read by the real
IEMOCAP reader.

Why the IEMOCAP raw layout: it has natural groups (sessions), evaluator votes (so multi-label works), dialogue
transcripts (context), dialogue videos cut by time segment and speaker side (the hardest frame path), and
4-class labels with a realistic imbalance; writing it exercises the same parser real data goes through.
Six sessions: 1-5 form the cross-validation pool (split ``train``), 6 is held out (split ``test``).

Signal per modality is set so ablations move the numbers: audio features carry the most class information,
video features less, face features little; transcripts name the emotion in about 40% of utterances; the
speaker's half of the frame gets a weak class-dependent tint. Features are ``(1024,)`` float32 ``.npy`` files in
Emotion-llama-scratch's folders (``hubert_features/``, ``maeV_features/``, ``mae_features/``).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..features import default_cache_dir
from ..modalities import folder_defaults
from . import iemocap
from .common import CorpusError, ReadResult, label_setup, options

SEED = 20240
MARKER = "demo.json"
SESSIONS = 6
TEST_SESSION = 6
DIALOGS = ("impro01", "impro02", "script01_1", "script02_1")
UTTERANCES_PER_DIALOG = 25
FPS = 10
FRAME = 64
"""Dialogue video frames are FRAME x FRAME; the speaker crop is FRAME/2 x FRAME/2 (32 x 32)."""
DIM = 1024
CODE_PROBS = {"neu": 0.30, "exc": 0.15, "hap": 0.09, "ang": 0.18, "sad": 0.16, "fru": 0.05, "xxx": 0.06, "sur": 0.01}
"""Consensus codes; fru/xxx/sur fall outside 4-class, so ~90% of the 600 utterances load (hap+exc ~ neu)."""
SIGNAL = {"audio": 0.2, "video": 0.1, "face": 0.03}
"""Class-mean scale per modality against unit noise (audio strongest, video medium, face weak)."""
FEATURE_DIRS = folder_defaults("scr")
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


VERSION = "demo-" + hashlib.sha1(repr((SEED, SESSIONS, TEST_SESSION, DIALOGS, UTTERANCES_PER_DIALOG, FPS, FRAME,
                                       CODE_PROBS, SIGNAL, CUES, PLAIN, TINT, BLEND_WITH, BLEND_PROB,
                                       BLEND_WEIGHT)).encode()).hexdigest()[:10]
"""Cache folder name: changes whenever a generator parameter does, so a stale cached corpus is never read."""


def root(data_cfg: Any) -> Path:
    """The demo corpus folder (``data.root``, else ``<cache>/<VERSION>``), generated there on first use."""
    folder = Path(data_cfg.root).expanduser() if getattr(data_cfg, "root", None) else default_cache_dir() / VERSION
    if not (folder / MARKER).is_file():
        generate(folder)
    return folder


def read(data_cfg: Any) -> ReadResult:
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


def _write(out: Path, rng: np.random.Generator) -> dict[str, int]:
    codes = list(CODE_PROBS)
    probs = np.array(list(CODE_PROBS.values()))
    means = {m: {c: rng.standard_normal(DIM) for c in codes} for m in SIGNAL}
    for m in SIGNAL:  # excitement and happiness share a class in 4-class
        means[m]["exc"] = means[m]["hap"] + 0.3 * rng.standard_normal(DIM)
    for d in FEATURE_DIRS.values():
        (out / d).mkdir()
    counts: dict[str, int] = {}
    for session in range(1, SESSIONS + 1):
        offsets = {m: 0.2 * rng.standard_normal(DIM) for m in SIGNAL}  # session nuisance
        for d, dialog in enumerate(DIALOGS):
            actor = "FM"[d % 2]
            name = f"Ses{session:02d}{actor}_{dialog}"
            base = out / f"Session{session}" / "dialog"
            for sub in ("EmoEvaluation", "transcriptions", "avi/DivX"):
                (base / sub).mkdir(parents=True, exist_ok=True)
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
                for m, d_name in FEATURE_DIRS.items():
                    mean = means[m][code] + (BLEND_WEIGHT * means[m][second] if second else 0)
                    x = SIGNAL[m] * mean + offsets[m] + rng.standard_normal(DIM)
                    np.save(out / d_name / f"{utt}.npy", x.astype(np.float32))
            (base / "EmoEvaluation" / f"{name}.txt").write_text("\n".join(evaluation) + "\n")
            (base / "transcriptions" / f"{name}.txt").write_text("\n".join(transcript) + "\n")
            _video(base / "avi" / "DivX" / f"{name}.avi", turns, t + 0.3, rng)
    return counts


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


def _video(path: Path, turns: list[tuple[float, float, str, str]], duration: float, rng: np.random.Generator) -> None:
    """Dialogue video: two people side by side; the speaker's half is tinted by the utterance's class."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"DIVX"), FPS, (FRAME, FRAME))
    if not writer.isOpened():
        raise CorpusError(f"cannot write demo video {path}: OpenCV has no DIVX encoder")
    base = np.full((FRAME, FRAME, 3), 110, np.float32)
    base[FRAME // 4: FRAME - FRAME // 4, 4: FRAME // 2 - 4] = (150, 120, 100)
    base[FRAME // 4: FRAME - FRAME // 4, FRAME // 2 + 4: FRAME - 4] = (120, 110, 140)
    for i in range(int(duration * FPS) + 1):
        now = i / FPS
        frame = base + rng.normal(0, 12, base.shape)
        for start, end, utt, code in turns:
            if start <= now < end:
                cols = slice(0, FRAME // 2) if iemocap.side(utt) == "left" else slice(FRAME // 2, FRAME)
                frame[FRAME // 4: FRAME - FRAME // 4, cols] += TINT[code]
        writer.write(cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    writer.release()
