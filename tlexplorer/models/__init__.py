"""Architectures, checkpoint I/O and hidden-layer discovery."""
from .architectures import (INPUT_SIZE, MODEL_NAMES, DigitsAlexNet, architecture_kwargs, build_model,
                            output_layer, replace_head)
from .checkpoints import file_sha256, load_checkpoint, load_state_dict, save_checkpoint
from .layers import HiddenLayer, hidden_layers

__all__ = ["INPUT_SIZE", "MODEL_NAMES", "DigitsAlexNet", "architecture_kwargs", "build_model",
           "output_layer", "replace_head",
           "file_sha256", "load_checkpoint", "load_state_dict", "save_checkpoint", "HiddenLayer",
           "hidden_layers"]
