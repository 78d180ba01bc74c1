"""Real media written with PyAV for extraction tests: h264 + AAC clips with a face and a tone sweep, and
the broken kinds a corpus contains (truncated, no audio, black, silent)."""
from __future__ import annotations

import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import librosa
import numpy as np
import soundfile
from skimage import data

RATE = 16000


def face_image(size: int = 160) -> np.ndarray:
    """The astronaut's head and shoulders (skimage's astronaut(), a real photo), RGB ``size x size``."""
    return cv2.resize(data.astronaut()[0:300, 100:400], (size, size), interpolation=cv2.INTER_AREA)


def portrait() -> np.ndarray:
    """A tall (160 x 96) face: sideways it is a wide image whose face a detector does not find."""
    return cv2.resize(face_image(160), (96, 160), interpolation=cv2.INTER_AREA)


def faststart_cut(path: Path) -> Path:
    """A 13.6 s faststart ``.mp4`` (index first, as web videos) cut at half its bytes: the index still states
    13.6 s and what remains decodes cleanly, so only comparing durations shows the loss."""
    whole = write_frames(path.with_name(f"whole-{path.name}"), [portrait()] * 340, audio=sweep(13.6), faststart=True)
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    whole.unlink()
    return path


def sweep(seconds: float, f0: float = 150.0, f1: float = 300.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 3 * t) ** 2  # syllable-like loudness changes
    return (amplitude * envelope * np.sin(phase)).astype(np.float32)


def write_clip(path: Path, seconds: float = 2.0, fps: int = 25, face: bool = True, audio: np.ndarray | None = None,
               with_audio: bool = True, black: bool = False, size: int = 160, seed: int = 0) -> Path:
    """An h264 + AAC ``.mp4`` (or any container PyAV infers from the suffix) of a face that moves a little."""
    rng = np.random.default_rng(seed)
    base = face_image(size) if face else np.full((size, size, 3), 90, np.uint8)
    if audio is None:
        audio = sweep(seconds, 150 + 20 * seed, 300 + 10 * seed)
    with av.open(str(path), "w") as out:
        video = out.add_stream("h264" if path.suffix == ".mp4" else "mpeg4", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=RATE, layout="mono") if with_audio else None
        for i in range(int(seconds * fps)):
            shift = int(3 * np.sin(i / 4))
            frame = np.zeros_like(base) if black else np.roll(base, shift, axis=1)
            if not black:
                frame = np.clip(frame.astype(np.int16) + rng.integers(-4, 5, frame.shape), 0, 255).astype(np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if sound is not None:
            _mux_audio(out, sound, audio)
    return path


def truncate(src: Path, dst: Path, keep: float = 0.4) -> Path:
    raw = src.read_bytes()
    dst.write_bytes(raw[: int(len(raw) * keep)])
    return dst


def voice(seconds: float, rng: np.random.Generator, rate: int = 48000) -> np.ndarray:
    """``[2, N]`` float32 stereo: a gliding pitch with harmonics and syllable-rate loudness, plus a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rng.uniform(100, 250) * (1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t), 0, None) ** 0.5
    mono = 0.2 * envelope * tone + 0.003 * rng.standard_normal(t.size)
    return np.stack([mono, mono]).astype(np.float32)


def write_scene_clip(path: Path, width: int, height: int, seconds: float, rng: np.random.Generator, fps: int = 25,
                     rate: int = 48000, preset: str = "veryfast") -> Path:
    """A clip shaped like a corpus's: ``width x height`` H.264 of a face (40-80% of the height) moving on a
    textured background, with 48 kHz stereo AAC voice-like audio."""
    background = cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    side = int(height * rng.uniform(0.4, 0.8))
    face = cv2.resize(data.astronaut()[0:300, 100:400], (side, side), interpolation=cv2.INTER_AREA)
    mx, my = width // 50 + 1, height // 100 + 1  # room for the motion below
    x, y = int(rng.integers(mx, width - side - mx)), int(rng.integers(my, height - side - my))
    audio = voice(seconds, rng, rate)
    with av.open(str(path), "w") as out:
        video = out.add_stream("h264", rate=fps, options={"preset": preset})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=rate, layout="stereo")
        for i in range(int(seconds * fps)):
            frame = background.copy()
            dx, dy = int(0.02 * width * np.sin(i / 9)), int(0.01 * height * np.sin(i / 13))
            frame[y + dy: y + dy + side, x + dx: x + dx + side] = face
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
        for start in range(0, audio.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + 1024].T).reshape(1, -1),
                                               format="flt", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
            out.mux(sound.encode(chunk))
        out.mux(sound.encode())
    return path


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 25, rotation: int | None = None,
                 audio: np.ndarray | None = None, faststart: bool = False) -> Path:
    """An h264 (+ AAC) ``.mp4`` of exactly ``frames``; ``rotation`` sets the display matrix (degrees
    counterclockwise, as phones store portrait video); ``faststart`` puts the index first, as web videos do."""
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        video = out.add_stream("h264", rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=RATE, layout="mono") if audio is not None else None
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            _mux_audio(out, sound, audio)
    return path


def write_audio(path: Path, seconds: float, amplitude: float = 0.3) -> Path:
    """An audio-only AAC ``.mp4`` (16 kbit/s: 30 minutes fit in about 4 MB) of a repeated 10 s sweep."""
    with av.open(str(path), "w") as out:
        sound = out.add_stream("aac", rate=RATE, layout="mono")
        sound.bit_rate = 16000
        piece = sweep(min(seconds, 10.0), amplitude=amplitude)
        _mux_audio(out, sound, piece, repeat=max(1, round(seconds / len(piece) * RATE)))
    return path


def _mux_audio(out, sound, audio: np.ndarray, repeat: int = 1) -> None:
    pts = 0
    for _ in range(repeat):
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[None, start:start + 1024]), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = RATE, pts, Fraction(1, RATE)
            pts += frame.samples
            out.mux(sound.encode(frame))
    out.mux(sound.encode())


def espeak(text: str, voice: str = "en-us") -> np.ndarray:
    """Real (formant-synthesised) speech from Debian's ``espeak-ng``, mono float32 at ``RATE``."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        audio, rate = soundfile.read(wav, dtype="float32")
    return librosa.resample(audio, orig_sr=rate, target_sr=RATE).astype(np.float32)


SENTENCES = ("I can't believe you did that to me, after everything we went through together.",
             "Well, the train leaves at nine tomorrow morning, so we should pack tonight.",
             "Oh wow, that is the best news I have heard all year!")


def unlike_clips(folder: Path) -> dict[str, Path]:
    """Clips unlike the demo corpus (for the out-of-distribution flag), by what makes them unlike it:
    real speech over the demo's own face photo, another real face (skimage's cameraman) speaking, a cat with
    a tone, and noise in both streams."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    cameraman = cv2.cvtColor(cv2.resize(data.camera()[20:300, 150:430], (160, 160)), cv2.COLOR_GRAY2RGB)
    cat = cv2.resize(data.chelsea(), (160, 160), interpolation=cv2.INTER_AREA)
    clips = {}
    for i, sentence in enumerate(SENTENCES[:2]):
        speech = espeak(sentence, ("en-us", "en-gb")[i])
        clips[f"speech-astronaut-{i}"] = write_clip(folder / f"speech-astronaut-{i}.mp4", len(speech) / RATE,
                                                     audio=speech, seed=i)
    speech = espeak(SENTENCES[2])
    clips["speech-cameraman"] = write_frames(folder / "speech-cameraman.mp4",
                                             [np.roll(cameraman, int(3 * np.sin(i / 4)), axis=1)
                                              for i in range(int(len(speech) / RATE * 25))], audio=speech)
    clips["cat-tone"] = write_frames(folder / "cat-tone.mp4", [cat] * 50, audio=sweep(2.0))
    noise_audio = (0.3 * rng.standard_normal(2 * RATE)).astype(np.float32)
    clips["noise"] = write_frames(folder / "noise.mp4", [rng.integers(0, 256, (160, 160, 3), np.uint8)
                                                         for _ in range(50)], audio=noise_audio)
    return clips
