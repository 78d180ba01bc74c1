"""Feature sources (per-sample folders, packed store, text embeddings) and frame reading."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import minigpt4.data.text_features as text_features
from minigpt4.data.frames import (
    FrameError,
    FrameReader,
    PackedFrames,
    load_frame,
    pack_frames,
)
from minigpt4.data.samples import Sample
from minigpt4.features.store import (
    FeatureError,
    NpyFolderFeatures,
    PackedFeatureStore,
    RoutedFeatures,
    pack_features,
)


def folders(tmp_path, ids=("a", "b"), dim=8):
    dirs = {}
    for m in ("face", "audio"):
        dirs[m] = tmp_path / m
        dirs[m].mkdir()
        for i, sid in enumerate(ids):
            np.save(dirs[m] / f"{sid}.npy", np.full(dim if sid != "b" else (3, dim), i, np.float64))
    return dirs


def test_npy_folder_shapes_and_dtype(tmp_path):
    src = NpyFolderFeatures(folders(tmp_path), {"face": 8})
    a, b = src.get("face", "a"), src.get("face", "b")
    assert a.shape == (1, 8) and b.shape == (3, 8) and a.dtype == b.dtype == np.float32
    assert src.has("audio", "a") and not src.has("audio", "zz") and not src.has("video", "a")


@pytest.mark.parametrize("array, message", [
    (np.array([1.0, np.nan] * 4), "contains NaN"),
    (np.zeros(5), "dimension 5, expected 8"),
    (np.zeros(8, np.int64), "dtype int64, expected a floating-point"),
    (np.zeros((0, 8)), "shape \\(0, 8\\)"),
])
def test_npy_folder_bad_arrays_name_sample_and_file(tmp_path, array, message):
    dirs = folders(tmp_path)
    np.save(dirs["face"] / "bad.npy", array)
    with pytest.raises(FeatureError, match=message) as err:
        NpyFolderFeatures(dirs, {"face": 8}).get("face", "bad")
    assert "'bad'" in str(err.value) and str(dirs["face"] / "bad.npy") in str(err.value)


@pytest.mark.parametrize("content", [b"", np.lib.format.MAGIC_PREFIX], ids=["empty", "truncated"])
def test_unreadable_npy_names_sample_and_file(tmp_path, content):
    dirs = folders(tmp_path)
    (dirs["face"] / "cut.npy").write_bytes(content)
    with pytest.raises(FeatureError, match=r"face feature of sample 'cut': cannot read .*face/cut\.npy \((EOF|Value)Error"):
        NpyFolderFeatures(dirs, {"face": 8}).get("face", "cut")
    store = pack_features(NpyFolderFeatures(dirs), ["a"], ["face"], tmp_path / "store", {"face": 8})
    (tmp_path / "store" / "face.npy").write_bytes(content)
    with pytest.raises(FeatureError, match=r"cannot read face data file .*store/face\.npy"):
        PackedFeatureStore(store.folder)


def test_npy_folder_missing_file_and_modality(tmp_path):
    dirs = folders(tmp_path)
    with pytest.raises(FeatureError, match="sample 'zz' is missing: expected file .*face/zz.npy"):
        NpyFolderFeatures(dirs).get("face", "zz")
    with pytest.raises(FeatureError, match="no feature folder configured for modality 'video'"):
        NpyFolderFeatures(dirs).get("video", "a")


def test_pack_roundtrip_and_dims_check(tmp_path):
    src = NpyFolderFeatures(folders(tmp_path))
    store = pack_features(src, ["a", "b"], ["face", "audio"], tmp_path / "store", {"face": 8, "audio": 8})
    assert isinstance(store, PackedFeatureStore) and set(store.modalities) == {"face", "audio"}
    for sid in ("a", "b"):
        np.testing.assert_array_equal(store.get("audio", sid), src.get("audio", sid))
    assert store.has("face", "b") and not store.has("face", "c")
    with pytest.raises(FeatureError, match="sample 'c' is missing from feature store"):
        store.get("face", "c")
    with pytest.raises(FeatureError, match="dimension 8, expected 1024"):
        PackedFeatureStore(tmp_path / "store", {"face": 1024})
    with pytest.raises(FeatureError, match="index.json not found"):
        PackedFeatureStore(tmp_path / "nowhere")
    routed = RoutedFeatures({"audio": store}, fallback=src)
    assert routed.get("face", "b").shape == (3, 8) and routed.has("audio", "a")


def test_pack_stops_on_bad_entry_and_writes_nothing(tmp_path):
    dirs = folders(tmp_path)
    np.save(dirs["audio"] / "a.npy", np.full(8, np.inf))
    with pytest.raises(FeatureError, match="'a'.*NaN or infinity"):
        pack_features(NpyFolderFeatures(dirs), ["a", "b"], ["audio"], tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_text_features_cached(tmp_path, monkeypatch):
    samples = [Sample(id="x", labels=("joy",), text="I am so happy."),
               Sample(id="y", labels=("sadness",), text="I feel terrible."),
               Sample(id="z", labels=("sadness",), text="I am so happy.")]
    store = text_features.text_feature_store(samples, tmp_path)
    x, y, z = (store.get("text", s.id) for s in samples)
    assert x.shape == (1, 384) and np.isclose(np.linalg.norm(x), 1, atol=1e-4)
    np.testing.assert_array_equal(x, z)
    assert float((x @ y.T)[0, 0]) < 0.9
    monkeypatch.setattr(text_features, "embed_texts", lambda *a, **k: pytest.fail("recomputed"))
    np.testing.assert_array_equal(text_features.text_feature_store(samples, tmp_path).get("text", "y"), y)
    with pytest.raises(FeatureError, match="no transcript.*'w'"):
        text_features.text_feature_store([Sample(id="w", labels=("joy",))], tmp_path)


def write_video(path, colours, size=(16, 12), fourcc="mp4v", fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    for colour in colours:
        writer.write(np.full((size[1], size[0], 3), colour[::-1], np.uint8))  # RGB in, BGR written
    writer.release()


def test_load_frame_video_image_npy(tmp_path):
    write_video(tmp_path / "clip.avi", [(200, 0, 0)] * 3 + [(0, 200, 0)] * 4, fourcc="MJPG")
    sample = Sample(id="clip", labels=("joy",), media=str(tmp_path / "clip.mp4"))  # .avi fallback
    first, middle, last = (load_frame(sample, w) for w in ("first", "middle", "6"))
    assert first.shape == (12, 16, 3) and first.dtype == np.uint8
    assert first[..., 0].mean() > 150 and middle[..., 1].mean() > 150 and last[..., 1].mean() > 150
    with pytest.raises(FrameError, match="frame 9 requested .*clip.avi has 7"):
        load_frame(sample, "9")
    image = np.zeros((5, 6, 3), np.uint8)
    image[..., 2] = 255
    cv2.imwrite(str(tmp_path / "im.png"), image[..., ::-1])
    assert load_frame(Sample(id="im", labels=(), media=str(tmp_path / "im.png")), "first")[0, 0].tolist() == [0, 0, 255]
    np.save(tmp_path / "frames.npy", np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3))
    assert load_frame(Sample(id="f", labels=(), media=str(tmp_path / "frames.npy")), "1")[0, 0, 0] == 48


def test_load_frame_dialogue_segment_and_side(tmp_path):
    colours = [(0, 0, 0)] * 10 + [(250, 250, 250)] * 10
    write_video(tmp_path / "dialog.avi", colours, size=(32, 16), fourcc="MJPG")
    sample = Sample(id="Ses01F_impro01_F003", labels=(), media=str(tmp_path / "dialog.avi"),
                    meta={"segment": (1.0, 1.9), "side": "left"})
    frame = load_frame(sample, "first")
    assert frame.shape == (8, 16, 3) and frame.mean() > 200


def test_frame_errors_name_sample_and_file(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(FrameError, match="'s1'.*broken.mp4"):
        load_frame(Sample(id="s1", labels=(), media=str(tmp_path / "broken.mp4")), "first")
    with pytest.raises(FrameError, match="'s2': media file not found: .*gone.png"):
        load_frame(Sample(id="s2", labels=(), media=str(tmp_path / "gone.png")), "first")
    with pytest.raises(FrameError, match="'s3' has no media"):
        load_frame(Sample(id="s3", labels=()), "first")


def test_pack_frames_and_reader(tmp_path):
    samples = []
    for i in range(3):
        write_video(tmp_path / f"c{i}.mp4", [(i * 50, 0, 0)] * 2)
        samples.append(Sample(id=f"c{i}", labels=(), media=str(tmp_path / f"c{i}.mp4")))
    pack_frames(samples, "first", tmp_path / "store", size=8)
    reader = FrameReader("first", tmp_path / "store")
    assert isinstance(reader.packed, PackedFrames) and reader.get(samples[2]).shape == (8, 8, 3)
    assert abs(int(reader.get(samples[2])[..., 0].mean()) - 100) < 10
    with pytest.raises(FrameError, match="'c9' is missing from packed frames"):
        reader.get(Sample(id="c9", labels=()))
