"""The modality registry is the one place modality names live; everything else derives from it."""
from minigpt4 import modalities
from minigpt4.data.prompts import PromptBuilder
from minigpt4.data.run_config import load_config
from minigpt4.models.assemble import build_tokenizer
from minigpt4.models.convert import PROJECTOR_MAP


def test_registry_drives_prompt_order_config_and_converter():
    assert modalities.SLOTS == ("image", "cls", "face", "video", "audio", "text")
    assert modalities.block_order("feature") == ("face", "video", "audio", "cls", "text")
    assert modalities.MODALITIES == ("image", "face", "video", "audio", "text")  # cls follows image
    assert modalities.with_followers(["image", "audio"]) == {"image", "cls", "audio"}
    cfg = load_config(None, ["data.corpus=meld", "data.root=/nonexistent"])  # upstream folders: registry widths
    assert {k: v.dim for k, v in cfg.model.features.items()} == modalities.default_dims()
    assert list(cfg.data.modalities) == list(modalities.MODALITIES)
    demo = load_config()  # the demo store is extracted by the zero-download extractors
    assert {k: v.dim for k, v in demo.model.features.items()} == {"face": 135, "video": 43, "audio": 64, "text": 384}
    assert PROJECTOR_MAP["feats_llama_proj3"] == "audio" and PROJECTOR_MAP["cls_tk_llama_proj"] == "cls"
    assert modalities.folder_defaults("merr") == {"face": "mae_340_UTT", "video": "maeV_399_UTT", "audio": "HL-UTT"}


def test_prompt_places_placeholders_by_registry_order():
    builder = PromptBuilder(build_tokenizer(load_config().model), {s: 1 for s in modalities.SLOTS}, "[INST] {} [/INST]")
    text = builder.instruction("emotion", "Which?", ["audio", "cls", "face", "image", "text"], None)
    assert text.startswith("<video><ImageHere></video> <feature><FaceHere><AudioHere><ClsHere><TextHere></feature> ")
