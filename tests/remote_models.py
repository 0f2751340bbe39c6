"""Small local remote-code reward models (a modeling_*.py plus auto_map), one per custom interface.

Each module writes a marker file when imported, so tests can prove that refusing --trust-remote-code ran
none of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import toy_models

MARKER = "IMPORTED_{name}"

_IMPORT_MARKER = '''
import pathlib as _pathlib
_pathlib.Path({marker_path!r}).write_text("imported")
'''

ARMO = '''
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class ArmoOutput(ModelOutput):
    rewards: Optional[torch.FloatTensor] = None
    gating_output: Optional[torch.FloatTensor] = None
    score: Optional[torch.FloatTensor] = None


class LlamaForRewardModelWithGating(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, config.num_objectives, bias=False)
        self.gating = nn.Linear(config.hidden_size, config.num_objectives)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        # Like ArmoRM: the row ends just before its first pad token (right padding only).
        ends = torch.eq(input_ids, self.config.pad_token_id).int().argmax(-1) - 1
        ends = ends % input_ids.shape[-1]
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), ends]
        rewards = self.regression_layer(last)
        gating = torch.softmax(self.gating(last), dim=-1)
        score = (rewards * gating).sum(-1, keepdim=True)
        return ArmoOutput(rewards=rewards, gating_output=gating, score=score)
'''

INTERNLM = '''
import torch
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class LlamaForRewardModel(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.v_head = nn.Linear(config.hidden_size, 1, bias=False)
        self.reward_token_id = config.reward_token_id
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        values = self.v_head(hidden).squeeze(-1)
        ends = attention_mask.cumsum(dim=1).argmax(dim=1).view(-1, 1)
        return SequenceClassifierOutputWithPast(logits=torch.gather(values, 1, ends))

    @torch.no_grad()
    def get_score(self, tokenizer, chat):
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = torch.cat([ids, torch.tensor([[self.reward_token_id]])], dim=1)
        return self.forward(input_ids=ids, attention_mask=torch.ones_like(ids))[0].item()

    def get_scores(self, tokenizer, chats):
        return [self.get_score(tokenizer, chat) for chat in chats]
'''

KLUGE = '''
from torch import nn
from transformers import BertModel, BertPreTrainedModel


class RewardModel(BertPreTrainedModel):
    """Seed 001: a BERT regression model whose forward takes alpha and returns the reward tensor."""

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)
        self.head = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, alpha=1.0):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return self.head(hidden.last_hidden_state[:, 0]) * alpha
'''

VALUE = '''
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import Qwen2Model, Qwen2PreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class ValueOutput(ModelOutput):
    values: Optional[torch.FloatTensor] = None


class Qwen2ValueModel(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.value_head = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return ValueOutput(values=self.value_head(hidden).squeeze(-1))
'''

MYSTERY = '''
from torch import nn
from transformers import LlamaModel, LlamaPreTrainedModel


class MysteryModel(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)

    def forward(self, input_ids=None, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.mean()
'''

OBJECTIVES = ["helpfulness", "correctness", "coherence", "verbosity"]


def _write(directory: Path, module: str, source: str, config_updates: dict) -> None:
    marker_path = str((directory / MARKER.format(name=module)).resolve())
    (directory / f"{module}.py").write_text(_IMPORT_MARKER.format(marker_path=marker_path) + source)
    config = json.loads((directory / "config.json").read_text())
    config.update(config_updates)
    (directory / "config.json").write_text(json.dumps(config, indent=2))


def _namespace(source: str, module: str) -> dict:
    """Import `source` as a real module file (transformers reads a model class's source file at init)."""
    import importlib.util
    import sys
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="rewardmill-src-")) / f"inprocess_{abs(hash(source)):x}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = loaded
    spec.loader.exec_module(loaded)
    return vars(loaded)


def _save(model, tok, directory: Path) -> Path:
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


def _decoder_base(family: str, directory: Path, cls_source: str, module: str, class_name: str, seed: int, **extra):
    """Instantiate the custom class in-process (an import of our own source), save it, then add auto_map."""
    namespace = _namespace(cls_source, module)
    tok = toy_models.TOKENIZERS[family]()
    config = toy_models._decoder_config(family, tok)
    for key, value in extra.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = namespace[class_name](config)
    _save(model, tok, directory)
    return tok


def build_armo(directory: Path, *, named: bool = True) -> Path:
    tok = toy_models.llama_tokenizer()
    extra = {"num_objectives": len(OBJECTIVES), "pad_token_id": tok.unk_token_id}
    if named:
        extra["objective_names"] = OBJECTIVES
    _decoder_base("llama", directory, ARMO, "modeling_armo", "LlamaForRewardModelWithGating", 1, **extra)
    _write(directory, "modeling_armo", ARMO, {
        **extra, "architectures": ["LlamaForRewardModelWithGating"],
        "auto_map": {"AutoModelForSequenceClassification": "modeling_armo.LlamaForRewardModelWithGating"},
    })
    return directory


REWARD_TOKEN = "[UNUSED_TOKEN_130]"


def build_internlm(directory: Path) -> Path:
    tok = toy_models.llama_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    reward_id = tok.convert_tokens_to_ids(REWARD_TOKEN)
    namespace = _namespace(INTERNLM, "modeling_internlm_rm")
    config = toy_models._decoder_config("llama", tok)
    config.reward_token_id = reward_id
    torch.manual_seed(2)
    model = namespace["LlamaForRewardModel"](config)
    with torch.no_grad():
        model.v_head.weight.normal_(0, 1.0)
    _save(model, tok, directory)
    _write(directory, "modeling_internlm_rm", INTERNLM, {
        "reward_token_id": reward_id, "architectures": ["LlamaForRewardModel"],
        "auto_map": {"AutoModel": "modeling_internlm_rm.LlamaForRewardModel"},
    })
    return directory


def build_kluge(directory: Path) -> Path:
    from transformers import BertConfig

    tok = toy_models.bert_tokenizer(directory)
    namespace = _namespace(KLUGE, "modeling_kluge")
    config = BertConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=256)
    torch.manual_seed(3)
    model = namespace["RewardModel"](config)
    _save(model, tok, directory)
    _write(directory, "modeling_kluge", KLUGE, {
        "architectures": ["RewardModel"], "auto_map": {"AutoModel": "modeling_kluge.RewardModel"},
    })
    return directory


# The same value model, declaring that a continuation behind a shared prefix scores as alone: its forward passes
# position_ids and the attention mask on to a transformers base that honours a 4D mask.
VALUE_SHARING = VALUE.replace("        self.post_init()", "        self.post_init()\n\n    supports_prefix_sharing = True").replace(
    "self.model(input_ids=input_ids, attention_mask=attention_mask)",
    "self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)")


def build_value(directory: Path, declares_sharing: bool = False) -> Path:
    source = VALUE_SHARING if declares_sharing else VALUE
    _decoder_base("qwen2", directory, source, "modeling_value", "Qwen2ValueModel", 4)
    _write(directory, "modeling_value", source, {
        "architectures": ["Qwen2ValueModel"], "auto_map": {"AutoModel": "modeling_value.Qwen2ValueModel"},
    })
    return directory


def build_mystery(directory: Path) -> Path:
    _decoder_base("llama", directory, MYSTERY, "modeling_mystery", "MysteryModel", 5)
    _write(directory, "modeling_mystery", MYSTERY, {
        "architectures": ["MysteryModel"], "auto_map": {"AutoModel": "modeling_mystery.MysteryModel"},
    })
    return directory


def build_multilabel(directory: Path) -> Path:
    """A built-in LlamaForSequenceClassification with three named labels (no custom code)."""
    from transformers import AutoModelForSequenceClassification

    tok = toy_models.llama_tokenizer()
    config = toy_models._decoder_config("llama", tok)
    config.num_labels = 3
    config.id2label = {0: "bad", 1: "ok", 2: "good"}
    config.label2id = {"bad": 0, "ok": 1, "good": 2}
    torch.manual_seed(6)
    model = AutoModelForSequenceClassification.from_config(config)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)
    return _save(model, tok, directory)


BUILDERS = {
    "armo": build_armo, "internlm": build_internlm, "kluge": build_kluge, "value": build_value,
    "mystery": build_mystery, "multilabel": build_multilabel,
}


# ------------------------------------------------------------------ absolute positions (GPT-2 based)
# GPT-2 learns absolute position embeddings, so a left-padded row scores differently unless its position ids
# count real tokens only: these models show whether rewardmill passes them on.

GPT2_VALUE = '''
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import GPT2Model, GPT2PreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class ValueOutput(ModelOutput):
    values: Optional[torch.FloatTensor] = None


class GPT2ValueModel(GPT2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.value_head = nn.Linear(config.n_embd, 1)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids).last_hidden_state
        return ValueOutput(values=self.value_head(hidden).squeeze(-1))
'''

GPT2_REWARD_TOKEN = '''
import torch
from torch import nn
from transformers import GPT2Model, GPT2PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutputWithPast


class GPT2ForRewardModel(GPT2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.v_head = nn.Linear(config.n_embd, 1, bias=False)
        self.reward_token_id = config.reward_token_id
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids).last_hidden_state
        values = self.v_head(hidden).squeeze(-1)
        ends = attention_mask.cumsum(dim=1).argmax(dim=1).view(-1, 1)
        return SequenceClassifierOutputWithPast(logits=torch.gather(values, 1, ends))

    @torch.no_grad()
    def get_score(self, tokenizer, chat):
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        ids = torch.cat([ids, torch.tensor([[self.reward_token_id]])], dim=1)
        return self.forward(input_ids=ids, attention_mask=torch.ones_like(ids))[0].item()
'''

GPT2_ARMO = '''
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from transformers import GPT2Model, GPT2PreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class ArmoOutput(ModelOutput):
    rewards: Optional[torch.FloatTensor] = None
    gating_output: Optional[torch.FloatTensor] = None
    score: Optional[torch.FloatTensor] = None


class GPT2RewardModelWithGating(GPT2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.regression_layer = nn.Linear(config.n_embd, config.num_objectives, bias=False)
        self.gating = nn.Linear(config.n_embd, config.num_objectives)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids).last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ends = attention_mask.shape[1] - 1 - attention_mask.flip(-1).argmax(-1)  # last real token, either side
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), ends]
        rewards = self.regression_layer(last)
        gating = torch.softmax(self.gating(last), dim=-1)
        return ArmoOutput(rewards=rewards, gating_output=gating, score=(rewards * gating).sum(-1, keepdim=True))
'''

GPT2_MODELS = {
    "value-head": (GPT2_VALUE, "modeling_gpt2_value", "GPT2ValueModel", {}),
    "reward-token": (GPT2_REWARD_TOKEN, "modeling_gpt2_rm", "GPT2ForRewardModel", {}),
    "multi-objective": (GPT2_ARMO, "modeling_gpt2_armo", "GPT2RewardModelWithGating", {"num_objectives": 3}),
}


def build_gpt2_custom(kind: str, directory: Path) -> Path:
    """A GPT-2 (absolute positions) custom-code model of `kind`, with a ChatML byte-level tokenizer."""
    source, module, class_name, extra = GPT2_MODELS[kind]
    tok = toy_models.qwen2_tokenizer()
    if kind == "reward-token":
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", REWARD_TOKEN]})
        extra = {"reward_token_id": tok.convert_tokens_to_ids(REWARD_TOKEN)}
    namespace = _namespace(source, module)
    config = toy_models.gpt2_config(tok)
    for key, value in extra.items():
        setattr(config, key, value)
    torch.manual_seed(8)
    model = namespace[class_name](config)
    with torch.no_grad():
        model.transformer.wpe.weight.normal_(0, 1.0)  # strong position signal: a shifted position shows
    _save(model, tok, directory)
    _write(directory, module, source, {**extra, "architectures": [class_name],
                                       "auto_map": {"AutoModel": f"{module}.{class_name}"}})
    return directory


# -------------------------------------------------- seed 001's model under another name (a fork)

SEED001_CONFIG = '''
from transformers import BertConfig


class RewardModelConfig(BertConfig):
    model_type = "rewardmodel-pt"
'''

SEED001_MODEL = '''
from torch import nn
from transformers import BertModel, PreTrainedModel

from .configuration_rewardmodel import RewardModelConfig


class RewardModel(PreTrainedModel):
    config_class = RewardModelConfig

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, alpha=1.0):
        pooled = self.bert(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.classifier(self.dropout(pooled)) * alpha
'''


def build_seed001_fork(directory: Path) -> Path:
    """Seed 001's shape (custom config subclassing BertConfig, BertModel inside, forward(alpha) returning the
    reward tensor) under a name no quirk matches."""
    tok = toy_models.bert_tokenizer(directory)
    namespace = _namespace(
        SEED001_CONFIG + SEED001_MODEL.replace("from .configuration_rewardmodel import RewardModelConfig", ""),
        "modeling_rewardmodel")
    config = namespace["RewardModelConfig"](vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=256)
    torch.manual_seed(9)
    model = namespace["RewardModel"](config)
    _save(model, tok, directory)
    (directory / "configuration_rewardmodel.py").write_text(SEED001_CONFIG)
    _write(directory, "modeling_rewardmodel", SEED001_MODEL, {
        "architectures": ["RewardModel"],
        "auto_map": {"AutoConfig": "configuration_rewardmodel.RewardModelConfig",
                     "AutoModel": "modeling_rewardmodel.RewardModel"},
    })
    return directory


def own_scores(directory: Path, convs: list, read: str) -> list[float]:
    """Independent single-row reference with the model's own code: `get_score` for reward-token models, else one
    unpadded forward read as `values[0, -1]` (value heads) or `score[0, 0]` (multi-objective)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    with torch.no_grad():
        if read == "get_score":
            return [model.get_score(tok, conv) for conv in convs]
        scores = []
        for conv in convs:
            ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
            output = model(input_ids=torch.tensor([ids]))
            scores.append(output.values[0, -1].item() if read == "values" else output.score[0, 0].item())
        return scores
