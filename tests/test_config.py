"""The registry of named configs: every entry is a valid `Config` with the real checkpoint's sizes."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
import torch
import yaml

from litllm.catalog import CATALOG_DIR as REGISTRY_DIR
from litllm.catalog import family_of, named_configs
from litllm.config import Config, UnknownModelError
from litllm.model import GPT

NAMES = [entry["name"] for entry in named_configs().values()]

# Every size the registry promises, by family.
REQUIRED = [
    *["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"],
    *[f"pythia-{s}" for s in ("14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")],
    *[f"Llama-2-{s}{kind}-hf" for s in ("7b", "13b", "70b") for kind in ("", "-chat")],
    *[f"Meta-Llama-3-{s}{kind}" for s in ("8B", "70B") for kind in ("", "-Instruct")],
    *[f"Llama-3.1-{s}{kind}" for s in ("8B", "70B") for kind in ("", "-Instruct")],
    *[f"Llama-3.2-{s}{kind}" for s in ("1B", "3B") for kind in ("", "-Instruct")],
    *["Mistral-7B-v0.1", "Mistral-7B-Instruct-v0.1", "Mistral-7B-v0.3", "Mistral-7B-Instruct-v0.3"],
    *[f"Qwen2.5-{s}{kind}" for s in ("0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B") for kind in ("", "-Instruct")],
    *[f"Qwen3-{s}" for s in ("0.6B", "1.7B", "4B", "8B", "14B", "32B")],
    *["phi-2", "Phi-3-mini-4k-instruct"],
    *[f"gemma-2-{s}{kind}" for s in ("2b", "9b") for kind in ("", "-it")],
    *[f"gemma-3-{s}-{kind}" for s in ("1b", "4b") for kind in ("pt", "it")],
    *[f"SmolLM2-{s}{kind}" for s in ("135M", "360M", "1.7B") for kind in ("", "-Instruct")],
    *["TinyLlama_v1.1", "TinyLlama-1.1B-Chat-v1.0"],
    *["OLMo-2-0425-1B", "OLMo-2-0425-1B-Instruct", "OLMo-2-1124-7B", "OLMo-2-1124-7B-Instruct"],
    *[f"nanochat-d{d}" for d in (12, 20, 26, 32)],
]


def conforms(value: Any, hint: Any) -> bool:
    """Whether `value`, as YAML loaded it, has the type a Config field declares."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in args
    if origin in (Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:  # YAML reads "1e-5" as a string and "1.0e-5" as a float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def n_params(config: Config) -> int:
    """Parameters of the model, a tied embedding counted once (`parameters()` skips repeats)."""
    with torch.device("meta"):
        model = GPT(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_every_registry_entry_builds_a_config(name: str) -> None:
    config = Config.from_name(name)
    assert config.name == name
    assert config.hf_model_type


def test_registry_values_have_the_types_their_fields_declare() -> None:
    hints = get_type_hints(Config)
    wrong = [
        f"{entry['name']}.{key}={value!r}"
        for entry in named_configs().values()
        for key, value in entry.items()
        if not conforms(value, hints[key])
    ]
    assert not wrong


def test_registry_names_are_unique_ignoring_case() -> None:
    families = [yaml.safe_load(path.read_text()) for path in REGISTRY_DIR.glob("*.yaml")]
    names = [entry["name"].lower() for family in families for entry in family["models"]]
    assert len(names) == len(set(names))


def test_registry_hf_repos_are_unique() -> None:
    repos = [entry["hf_repo"].lower() for entry in named_configs().values() if entry.get("hf_repo")]
    assert len(repos) == len(set(repos))


@pytest.mark.parametrize("name", REQUIRED)
def test_required_model_is_registered(name: str) -> None:
    assert name.lower() in named_configs()


def test_from_name_ignores_case() -> None:
    assert Config.from_name("LLAMA-3.2-1b") == Config.from_name("Llama-3.2-1B")
    assert Config.from_name("LLAMA-3.2-1b").name == "Llama-3.2-1B"


def test_from_name_accepts_the_hf_repo_id() -> None:
    assert Config.from_name("EleutherAI/pythia-160m").name == "pythia-160m"
    assert Config.from_name("qwen/qwen2.5-0.5b-instruct").name == "Qwen2.5-0.5B-Instruct"


def test_from_name_applies_overrides() -> None:
    config = Config.from_name("gpt2", n_layer=2, block_size=128)
    assert (config.n_layer, config.block_size, config.n_embd) == (2, 128, 768)


def test_unknown_name_raises_with_close_names() -> None:
    with pytest.raises(UnknownModelError) as excinfo:
        Config.from_name("pythia-161m")
    message = str(excinfo.value)
    assert "'pythia-161m'" in message
    assert "pythia-160m" in message


def test_family_of_names_the_registry_file() -> None:
    assert family_of("llama-3.2-1b") == "llama3"
    assert family_of("Qwen2.5-7B") == "qwen2.5"


# Published parameter counts of the Hugging Face checkpoints (model cards, safetensors metadata, keras-hub presets).
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt2", 124_439_808),
        ("pythia-160m", 162_322_944),
        ("Llama-3.2-1B", 1_235_814_400),
        ("Qwen2.5-0.5B", 494_032_768),
        ("Qwen3-0.6B", 596_049_920),
        ("gemma-2-2b", 2_614_341_888),
        ("gemma-3-1b-pt", 999_885_952),
        ("SmolLM2-135M", 134_515_008),
        ("TinyLlama_v1.1", 1_100_048_384),
        ("phi-2", 2_779_683_840),
        ("nanochat-d20", 560_988_160),
    ],
)
def test_model_has_the_checkpoints_parameter_count(name: str, expected: int) -> None:
    assert n_params(Config.from_name(name)) == pytest.approx(expected, rel=5e-3)


@pytest.mark.parametrize("name", NAMES)
def test_config_survives_a_yaml_round_trip(name: str, tmp_path) -> None:
    config = Config.from_name(name)
    path = tmp_path / "model_config.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert Config.from_file(path) == config


def test_gemma2_alternates_sliding_and_global_layers_starting_with_sliding() -> None:
    config = Config.from_name("gemma-2-2b")
    assert [config.is_sliding(i) for i in range(4)] == [True, False, True, False]


def test_gemma3_makes_every_sixth_layer_global() -> None:
    config = Config.from_name("gemma-3-1b-pt")
    assert [config.is_sliding(i) for i in range(12)] == ([True] * 5 + [False]) * 2


def test_mistral_v01_slides_on_every_layer_and_v03_on_none() -> None:
    v01, v03 = Config.from_name("Mistral-7B-v0.1"), Config.from_name("Mistral-7B-v0.3")
    assert all(v01.is_sliding(i) for i in range(v01.n_layer))
    assert not any(v03.is_sliding(i) for i in range(v03.n_layer))


def test_qwen3_heads_are_wider_than_n_embd_over_n_head() -> None:
    config = Config.from_name("Qwen3-0.6B")
    assert (config.head_size, config.n_embd // config.n_head) == (128, 64)


def test_nanochat_depth_sets_the_sizes() -> None:
    config = Config.from_name("nanochat-d20")
    sizes = (config.n_layer, config.n_embd, config.n_head, config.head_size, config.intermediate_size)
    assert sizes == (20, 1280, 10, 128, 5120)
