"""Configuration: the typed schema, reading YAML + presets + overrides, and the checks types cannot express.

The bottom layer: it imports nothing of the project but the modality registry. Feature widths recorded in a
feature store are filled by the data layer (:func:`minigpt4.data.run_config.load_config`).
"""
from minigpt4.config.checks import check_config, require_complete
from minigpt4.config.loading import ENV_OVERRIDES, read_config, save_config, split_cli
from minigpt4.config.schema import (
                                    ClassifierConfig,
                                    Config,
                                    ConfigError,
                                    DataConfig,
                                    EvalConfig,
                                    LLMConfig,
                                    LoraSettings,
                                    ModalityConfig,
                                    ModelConfig,
                                    RunConfig,
                                    TextEncoderConfig,
                                    VisionConfig,
                                    field_doc,
)

__all__ = ["ClassifierConfig", "Config", "ConfigError", "DataConfig", "ENV_OVERRIDES", "EvalConfig", "LLMConfig",
           "LoraSettings", "ModalityConfig", "ModelConfig", "RunConfig", "TextEncoderConfig", "VisionConfig",
           "check_config", "field_doc", "read_config", "require_complete", "save_config", "split_cli"]
