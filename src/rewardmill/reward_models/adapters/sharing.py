"""Whether a causal decoder scores a continuation exactly as alone when it runs after a shared prefix under a
block mask, with its own positions: what `prefix_sharing_refusal` of a last-token family checks.

That holds when attention is causal (not Gemma's `use_bidirectional_attention`) and sees only what the mask allows
(a sliding window, which the block mask does not apply, must be at least as long as each grouped row's own tokens:
longer rows are not grouped, see `shareable_length`), positions come only from `position_ids` (no ALiBi, no RoPE
scaled by the sequence's length), and the attention implementation takes a 4D mask or a flex attention BlockMask
(flash attention's kernels take neither). A model with its own code (trust_remote_code) must declare support:
`supports_prefix_sharing = True`.
"""

from __future__ import annotations

import torch

UNPADDED_SDPA = "rewardmill_unpadded_sdpa"  # SDPA as rewardmill's unpadded batches run it (`unpadded.py`)
MASKED_ATTENTION = ("sdpa", UNPADDED_SDPA, "eager", "flex_attention")  # take a 4D block mask (flex: a BlockMask)
LENGTH_SCALED_ROPE = ("dynamic", "longrope")  # rescale by the sequence's length, not the row's


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def sliding_window(config) -> int | None:
    """The attention window of the model's sliding layers, or None when every layer attends to the whole row."""
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return window if "sliding_attention" in layer_types else None
    return window if getattr(config, "use_sliding_window", True) else None


def rope_types(config) -> set[str]:
    """The RoPE types the config names (one, or one per layer type, as Gemma 3's rope_parameters)."""
    kinds = set()
    for name in ("rope_parameters", "rope_scaling"):
        value = getattr(config, name, None)
        if isinstance(value, dict):
            for part in (value, *(v for v in value.values() if isinstance(v, dict))):
                kinds.add(part.get("rope_type") or part.get("type"))
    return {str(kind) for kind in kinds if kind}


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The text decoder's list of layers: `layers` of transformers' `get_decoder()` (the language model of a
    multimodal model, not its vision tower), else the first layer list as long as the config's
    `num_hidden_layers`; None when neither is found."""
    try:
        layers = getattr(model.get_decoder(), "layers", None)
    except (AttributeError, NotImplementedError, TypeError, ValueError):  # remote code, or no decoder to find
        layers = None
    if isinstance(layers, torch.nn.ModuleList) and len(layers):
        return layers
    count = getattr(text_config(model.config), "num_hidden_layers", None)
    return next((m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and count and len(m) == count),
                None)


def bidirectional(model: torch.nn.Module) -> bool:
    """Whether the text decoder's attention looks both ways (Gemma's `use_bidirectional_attention`: transformers
    then sets its attention modules' `is_causal` False and builds a bidirectional mask)."""
    if getattr(text_config(model.config), "use_bidirectional_attention", None) in (True, "all"):
        return True
    layers = decoder_layers(model) or []
    return any(getattr(getattr(layer, "self_attn", None), "is_causal", True) is False for layer in layers)


def shareable_length(model: torch.nn.Module) -> int | None:
    """The longest row that may share its prefix: a sliding window's length (a row within it attends to all of
    itself, as the block mask lets it), or None when any row may."""
    return sliding_window(text_config(model.config))


def prefix_sharing_refusal(model: torch.nn.Module, takes_positions: bool) -> str | None:
    """Why a causal decoder read at one token cannot share prefixes exactly, or None when it can."""
    config = text_config(model.config)
    if type(model).__module__.startswith("transformers_modules") and not getattr(model, "supports_prefix_sharing",
                                                                                 False):
        return "the model runs its own code (trust_remote_code) and does not declare supports_prefix_sharing"
    if not takes_positions:
        return ("its base model's forward takes no position_ids (or takes extra arguments), so a continuation "
                "cannot keep the positions it has alone")
    if bidirectional(model):
        return ("its attention is bidirectional (use_bidirectional_attention): a prefix's tokens would see its "
                "continuations")
    attention = getattr(model.config, "_attn_implementation", None) or "eager"
    if attention not in MASKED_ATTENTION:
        return f"{attention} attention takes no block mask (sdpa, eager and flex_attention do)"
    if getattr(config, "alibi", False) or getattr(config, "model_type", "") in ("bloom", "mpt"):
        return "ALiBi attention biases by distance in the sequence, not by position ids"
    scaled = sorted(rope_types(config) & set(LENGTH_SCALED_ROPE))
    if scaled:
        return f"{scaled[0]} RoPE scaling depends on the length of the whole sequence"
    return None
