import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests run on one thread; `--threads auto` then never changes it
os.environ["HF_MODULES_CACHE"] = tempfile.mkdtemp(prefix="rewardmill-hf-modules-")  # remote code copies land here

import pytest  # noqa: E402
import torch  # noqa: E402
import toy_models  # noqa: E402

torch.set_num_threads(1)

DECODERS = ("llama", "qwen2", "gemma")


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict:
    """Directories of every toy reward model, built once per test session."""
    root = tmp_path_factory.mktemp("models")
    dirs = {family: toy_models.build_decoder_rm(family, root / family) for family in DECODERS}
    dirs["bert"] = toy_models.build_bert_rm(root / "bert")
    return dirs


@pytest.fixture(scope="session")
def llama_dir(model_dirs):
    return model_dirs["llama"]


@pytest.fixture(scope="session")
def bert_dir(model_dirs):
    return model_dirs["bert"]
