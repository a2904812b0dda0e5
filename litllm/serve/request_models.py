"""Request bodies of `litllm serve`, with the limits every request is checked against before it reaches the model."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from litllm.inference.options import checked_logit_bias
from litllm.serve.errors import APIError


class Limits(BaseModel):
    """What one request may ask for (like nanochat's server); `litllm serve` flags can change them."""

    max_messages: int = 500
    max_message_chars: int = 8000
    max_total_chars: int = 32000
    max_tokens: int = 4096
    max_top_k: int = 200
    max_n: int = 16
    max_stop: int = 8


LIMITS = Limits()


def set_limits(changes: dict[str, Any]) -> None:
    """Change the request limits of this process (before the server starts, so its HTTP process inherits them)."""
    unknown = set(changes) - set(Limits.model_fields)
    if unknown:
        raise ValueError(f"unknown limit {sorted(unknown)[0]!r}; accepted: {', '.join(Limits.model_fields)}")
    bad = {k: v for k, v in changes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        name, value = next(iter(bad.items()))
        raise ValueError(f"limit {name} must be an integer >= 1, got {value!r}")
    for name, value in changes.items():
        setattr(LIMITS, name, value)


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a field not taken (name, tool_calls, ...) is refused, never dropped

    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: Union[str, list[TextPart]]

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class JSONSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: a named schema the reply must validate against."""

    model_config = ConfigDict(extra="ignore")  # description, strict: the reply always obeys the schema here

    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")


class ResponseFormat(BaseModel):
    """OpenAI's `response_format`: plain text, any JSON object, or JSON valid against a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JSONSchemaFormat] = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs json_schema: {'name': ..., 'schema': {...}}")
        return self


Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
Stop = Union[str, list[str], None]


STRUCTURED = ("response_format", "guided_json", "guided_regex", "guided_grammar")

# OpenAI fields that are not options of a generation here: name -> (the values accepted, why others are refused).
# None (accepted values): any value is accepted and has no effect on a local model's output (user, metadata: a
# caller's labels; prediction: OpenAI's latency hint, the output is the same; parallel_tool_calls: no tools here;
# prompt_cache_key, safety_identifier: OpenAI's routing and abuse tracking). A null value is always accepted.
OPENAI_EXTRAS: dict[str, tuple[Optional[tuple[Any, ...]], str]] = {
    "user": (None, ""),
    "metadata": (None, ""),
    "prediction": (None, ""),
    "parallel_tool_calls": (None, ""),
    "prompt_cache_key": (None, ""),
    "safety_identifier": (None, ""),
    "store": ((False,), "this server stores no completions: store must be false"),
    "service_tier": (("auto", "default"), "this server has one service tier: service_tier must be auto or default"),
    "modalities": ((["text"],), 'this server answers in text only: modalities must be ["text"]'),
    "tools": (([],), "tools are not supported by this server (no tool calling)"),
    "tool_choice": (("none",), "tool_choice is not supported by this server (no tool calling); only none"),
    "functions": (([],), "functions are not supported by this server (no function calling)"),
    "function_call": (("none",), "function_call is not supported by this server (no function calling); only none"),
    "audio": ((), "audio output is not supported by this server"),
    "reasoning_effort": ((), "reasoning_effort is not supported: the models served here have no reasoning mode"),
    "verbosity": ((), "verbosity is not supported by this server"),
    "web_search_options": ((), "web search is not supported by this server"),
    "top_logprobs": ((0,), "top_logprobs is not supported by this server (logprobs=true gives each token's own)"),
    "echo": ((False,), "echo is not supported by this server"),
    "suffix": (("",), "suffix (text insertion) is not supported by this server"),
}


class SamplingFields(BaseModel):
    """Sampling options shared by the OpenAI-style routes. Every field is honoured; the other OpenAI fields are
    accepted only where they change nothing here (OPENAI_EXTRAS), and any other field is refused with a 400."""

    model_config = ConfigDict(extra="forbid")

    model: Optional[str] = None
    adapter: Optional[str] = Field(None, min_length=1)  # litllm's option: a served LoRA adapter, or "base"
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    top_k: int = Field(0, ge=0)
    min_p: float = Field(0.0, ge=0, lt=1)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    logit_bias: Optional[dict[Any, Any]] = None  # token id (a string, as JSON keys are) -> bias in [-100, 100]
    seed: Optional[int] = None
    stop: Stop = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    logprobs: Optional[bool] = None
    # structured output: OpenAI's response_format, or vLLM's guided decoding fields (at most one of them)
    response_format: Optional[ResponseFormat] = None
    guided_json: Optional[Union[dict[str, Any], str]] = None
    guided_regex: Optional[str] = Field(None, min_length=1)
    guided_grammar: Optional[str] = Field(None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _openai_extras(cls, data: Any) -> Any:
        """The body without the OpenAI fields that change nothing here; a 400 naming any other field not taken."""
        if not isinstance(data, dict):
            return data
        kept = {}
        for name, value in data.items():
            if name in cls.model_fields:
                kept[name] = value
            elif name not in OPENAI_EXTRAS:
                taken = ", ".join([*cls.model_fields, *OPENAI_EXTRAS])
                raise APIError(400, f"unknown field {name!r}; this server takes: {taken}", param=name)
            elif value is not None and OPENAI_EXTRAS[name][0] is not None and value not in OPENAI_EXTRAS[name][0]:
                raise APIError(400, f"{name}={json.dumps(value)}: {OPENAI_EXTRAS[name][1]}", param=name)
        return kept

    @field_validator("logit_bias")
    @classmethod
    def _logit_bias(cls, bias: Optional[dict[Any, Any]]) -> Optional[dict[str, float]]:
        try:
            return None if bias is None else {str(k): v for k, v in checked_logit_bias(bias).items()}
        except (TypeError, ValueError) as e:
            raise APIError(400, str(e), param="logit_bias") from None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: Stop) -> Stop:
        stops = [stop] if isinstance(stop, str) else stop or []
        if len(stops) > LIMITS.max_stop or any(not s for s in stops):
            raise ValueError(f"stop takes at most {LIMITS.max_stop} non-empty strings")
        return stop

    @model_validator(mode="after")
    def _within_limits(self) -> SamplingFields:
        if self.top_k > LIMITS.max_top_k:
            raise ValueError(f"top_k must be between 0 and {LIMITS.max_top_k}, got {self.top_k}")
        if self.max_tokens is not None and self.max_tokens > LIMITS.max_tokens:
            raise ValueError(f"max_tokens must be between 1 and {LIMITS.max_tokens}, got {self.max_tokens}")
        if self.n > LIMITS.max_n:
            raise ValueError(f"n must be between 1 and {LIMITS.max_n}, got {self.n}")
        given = [name for name in STRUCTURED if getattr(self, name) is not None and not self._plain_text(name)]
        if len(given) > 1:
            raise ValueError(f"give at most one of {', '.join(STRUCTURED)}; got {' and '.join(given)}")
        return self

    def _plain_text(self, name: str) -> bool:
        return name == "response_format" and self.response_format.type == "text"

    def structure(self) -> dict[str, Any]:
        """The schema, regex or grammar the reply must follow, as generation options (none: {})."""
        if self.guided_regex is not None:
            return {"regex": self.guided_regex}
        if self.guided_grammar is not None:
            return {"grammar": self.guided_grammar}
        if isinstance(self.guided_json, str) and self.guided_json.lstrip().startswith("{"):
            try:
                return {"schema": json.loads(self.guided_json)}  # a schema sent as JSON text, as vLLM accepts it
            except ValueError as e:
                raise APIError(400, f"guided_json is not valid JSON: {e}", param="guided_json") from None
        if self.guided_json is not None:
            return {"schema": self.guided_json}  # a dict, or llm's "name, age int" syntax
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return {}
        return {"schema": fmt.json_schema.schema_ if fmt.type == "json_schema" else {"type": "object"}}

    def options(self, default_max_tokens: int) -> dict[str, Any]:
        """Keyword arguments for `LLM.chat_request` / `LLM.completion_request`."""
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        return {
            "max_new_tokens": self.max_tokens or default_max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k or None,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "logit_bias": self.logit_bias,
            "seed": self.seed,
            "stop": stop,
            "num_samples": self.n,
            "logprobs": bool(self.logprobs),
            **self.structure(),
        }

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`: whether the stream ends with a chunk of token counts."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False


SamplingFields.model_rebuild()


class ChatCompletionRequest(SamplingFields):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _messages_within_limits(self) -> ChatCompletionRequest:
        check_messages(self.messages)
        if self.max_completion_tokens is not None:
            if self.max_completion_tokens > LIMITS.max_tokens:
                raise ValueError(f"max_completion_tokens must be between 1 and {LIMITS.max_tokens}")
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(SamplingFields):
    prompt: Union[str, list[str]]
    best_of: Optional[int] = Field(None, ge=1)  # accepted only equal to n: there is no choice among samples here

    @model_validator(mode="after")
    def _best_of_is_n(self) -> CompletionRequest:
        if self.best_of not in (None, self.n):
            raise APIError(400, f"best_of={self.best_of}: only best_of equal to n ({self.n}) is supported", "best_of")
        return self

    @field_validator("prompt")
    @classmethod
    def _prompt_within_limits(cls, prompt: Union[str, list[str]]) -> Union[str, list[str]]:
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not prompts or len(prompts) > LIMITS.max_n:
            raise ValueError(f"prompt must be a string or a list of 1 to {LIMITS.max_n} strings")
        if any(not p for p in prompts):
            raise ValueError("prompt must not be empty")
        if sum(len(p) for p in prompts) > LIMITS.max_total_chars:
            raise ValueError(f"prompt is longer than {LIMITS.max_total_chars} characters")
        return prompt


class NanochatRequest(BaseModel):
    """nanochat's `/chat/completions` body: messages and a few sampling knobs; the reply streams token by token."""

    model_config = ConfigDict(extra="forbid")  # a field not taken is refused (422, naming it), never dropped

    messages: list[Message] = Field(min_length=1)
    temperature: Temperature = 0.8
    max_tokens: int = Field(512, ge=1)
    top_k: int = Field(50, ge=0)
    model: Optional[str] = None  # litllm's: a served LoRA adapter by name (the base's name, "base" or none: the base)
    adapter: Optional[str] = Field(None, min_length=1)  # ... or by this field, as on the OpenAI routes

    @model_validator(mode="after")
    def _within_limits(self) -> NanochatRequest:
        check_messages(self.messages)
        if self.max_tokens > LIMITS.max_tokens:
            raise ValueError(f"max_tokens must be between 1 and {LIMITS.max_tokens}, got {self.max_tokens}")
        if self.top_k > LIMITS.max_top_k:
            raise ValueError(f"top_k must be between 0 and {LIMITS.max_top_k}, got {self.top_k}")
        return self


class GenerateRequest(BaseModel):
    """The control API's `/api/generate` (nanoGPT's API server): a prompt to continue."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    max_new_tokens: int = Field(100, ge=1)
    temperature: Temperature = 0.8
    top_k: Optional[int] = Field(200, ge=0)
    model: Optional[str] = None  # litllm's: a served LoRA adapter by name (the base's name, "base" or none: the base)
    adapter: Optional[str] = Field(None, min_length=1)  # ... or by this field, as on the OpenAI routes

    @model_validator(mode="after")
    def _within_limits(self) -> GenerateRequest:
        if len(self.prompt) > LIMITS.max_total_chars:
            raise ValueError(f"prompt is longer than {LIMITS.max_total_chars} characters")
        if self.max_new_tokens > LIMITS.max_tokens:
            raise ValueError(f"max_new_tokens must be between 1 and {LIMITS.max_tokens}, got {self.max_new_tokens}")
        if (self.top_k or 0) > LIMITS.max_top_k:
            raise ValueError(f"top_k must be between 0 and {LIMITS.max_top_k}, got {self.top_k}")
        return self


class LoadModelRequest(BaseModel):
    """`/api/load_model`: one model, by name (`model_type` as nanoGPT's server calls it, or `model_name`) or by path
    (`model_path`: a checkpoint or training run under the server's roots). Every field goes through one resolver.
    `adapters` serves LoRA adapters over it, each by the name a request gives as its `model`."""

    model_config = ConfigDict(extra="forbid")

    model_type: Optional[str] = Field(None, min_length=1)
    model_path: Optional[str] = Field(None, min_length=1)
    model_name: Optional[str] = Field(None, min_length=1)
    adapters: Optional[dict[str, str]] = None  # LoRA adapters to serve over it: {name: folder under the roots}

    @model_validator(mode="after")
    def _one_source(self) -> LoadModelRequest:
        given = [name for name in LOAD_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of model_type (a model name, e.g. gpt2), model_path (a checkpoint or training run "
                f"under the server's roots) or model_name; got {' and '.join(given) or 'none'}"
            )
        return self

    @property
    def field(self) -> str:
        """The field that names the model."""
        return next(name for name in LOAD_FIELDS if getattr(self, name) is not None)


LOAD_FIELDS = ("model_type", "model_path", "model_name")


class TrainRequest(BaseModel):
    """`/api/train`, in either of two forms.

    nanoGPT's: `dataset` (+ `output_dir`, `model_type`, `batch_size`, `learning_rate`, `max_iters`,
    `eval_interval`, and the from-scratch architecture `n_layer`, `n_head`, `n_embd`, `block_size`). With
    `model_type` the run finetunes that model; without, it trains a GPT-2-style model from scratch, by default
    nanoGPT's CPU size (4 layers, 4 heads, 128 wide, 64-token context). Defaults: batch_size 4, max_iters 100,
    learning_rate 1e-3 from scratch and 3e-5 finetuning, eval_interval max_iters (see serve/jobs.py).
    litllm's: a recipe (`recipe`: a name under config_hub, or `config`: an inline one) with dotted `overrides`,
    run by `command`.
    """

    model_config = ConfigDict(extra="forbid")

    command: Optional[Literal["pretrain", "finetune"]] = None
    recipe: Optional[str] = None
    config: Optional[dict[str, Any]] = None
    overrides: Optional[dict[str, Any]] = None

    dataset: Optional[str] = Field(None, min_length=1)
    output_dir: Optional[str] = Field(None, min_length=1)
    model_type: Optional[str] = Field(None, min_length=1)
    batch_size: Optional[int] = Field(None, ge=1, le=4096)
    learning_rate: Optional[float] = Field(None, gt=0, le=1)
    max_iters: Optional[int] = Field(None, ge=1)
    eval_interval: Optional[int] = Field(None, ge=1)
    n_layer: Optional[int] = Field(None, ge=1, le=256)
    n_head: Optional[int] = Field(None, ge=1, le=256)
    n_embd: Optional[int] = Field(None, ge=1, le=65536)
    block_size: Optional[int] = Field(None, ge=1, le=1_048_576)

    @model_validator(mode="after")
    def _one_form(self) -> TrainRequest:
        nanogpt = [name for name in NANOGPT_TRAIN_FIELDS if getattr(self, name) is not None]
        recipe = [name for name in ("command", "recipe", "config", "overrides") if getattr(self, name) is not None]
        if nanogpt and self.dataset is None:
            raise ValueError(f"{nanogpt[0]} needs dataset: the data to train on (e.g. a prepared data/<name> folder)")
        if nanogpt and recipe:
            raise ValueError(
                f"give either dataset (with {', '.join(NANOGPT_TRAIN_FIELDS[1:5])}, ...) or a recipe "
                f"(recipe or config, with command and overrides), not both; got {' and '.join(nanogpt + recipe)}"
            )
        if not nanogpt and (self.recipe is None) == (self.config is None):
            raise ValueError(
                "give dataset (nanoGPT's form), or exactly one of recipe (a name under config_hub) or config "
                "(an inline recipe)"
            )
        if self.n_embd is not None and self.n_head is not None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        return self

    def given(self) -> dict[str, Any]:
        """The nanoGPT-form fields as the request gave them."""
        return {name: getattr(self, name) for name in NANOGPT_TRAIN_FIELDS if name in self.model_fields_set}


NANOGPT_TRAIN_FIELDS = (
    "dataset",
    "output_dir",
    "model_type",
    "batch_size",
    "learning_rate",
    "max_iters",
    "eval_interval",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
)


def check_messages(messages: list[Message]) -> None:
    """Raise ValueError unless the conversation fits the limits."""
    if len(messages) > LIMITS.max_messages:
        raise ValueError(f"at most {LIMITS.max_messages} messages, got {len(messages)}")
    for i, m in enumerate(messages):
        if len(m.text) > LIMITS.max_message_chars:
            raise ValueError(f"message {i} has {len(m.text)} characters; at most {LIMITS.max_message_chars}")
    total = sum(len(m.text) for m in messages)
    if total > LIMITS.max_total_chars:
        raise ValueError(f"the messages have {total} characters in all; at most {LIMITS.max_total_chars}")
