"""The one list of generation options: `GenerationOptions` (with `SamplingParams`, the part that chooses each
token), taken by every interface: `LLM.generate` and `chat`, the CLI's `generate` and `chat`, the llm-style API and
the server's request bodies. Standard library only: the CLI and the llm-style API import it without torch."""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Optional, Union


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. temperature 0 is greedy; top_k 0 or None and top_p 1 mean no limit."""

    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature; 0 is greedy."})
    top_k: Optional[int] = field(default=None, metadata={"help": "Sample among the k most likely tokens only."})
    top_p: float = field(
        default=1.0, metadata={"help": "Sample among the most likely tokens whose probabilities add up to top_p."}
    )
    min_p: float = field(
        default=0.0, metadata={"help": "Drop tokens less likely than min_p times the most likely one."}
    )
    repetition_penalty: float = field(
        default=1.0, metadata={"help": "Above 1 makes tokens already in the text less likely."}
    )
    presence_penalty: float = field(
        default=0.0, metadata={"help": "Subtracted from the logit of every token already generated (-2 to 2)."}
    )
    frequency_penalty: float = field(
        default=0.0, metadata={"help": "Times each token's count so far, subtracted from its logit (-2 to 2)."}
    )
    logit_bias: Optional[dict[int, float]] = field(
        default=None,
        hash=False,  # a dict: the params stay hashable by their other fields
        metadata={"help": "Token id -> bias in [-100, 100] added to its raw logit (at most 300 ids)."},
    )

    def __post_init__(self) -> None:
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if self.top_k is not None and (not _is_number(self.top_k) or not isinstance(self.top_k, int) or self.top_k < 0):
            raise ValueError(f"top_k must be None or an integer >= 0 (0 = no limit), got {self.top_k!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_number(self.min_p) or not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1), got {self.min_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be a number > 0 (1 = off), got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not _is_number(value) or not -2 <= value <= 2:
                raise ValueError(f"{name} must be a number in [-2, 2] (0 = off), got {value!r}")
        if self.logit_bias is not None:
            object.__setattr__(self, "logit_bias", checked_logit_bias(self.logit_bias))

    @property
    def adjusts_raw_logits(self) -> bool:
        """Whether anything changes the logits before temperature (a bias or a penalty)."""
        return bool(self.logit_bias) or self.repetition_penalty != 1 or self.presence_penalty or self.frequency_penalty


MAX_LOGIT_BIAS = 300  # entries, as OpenAI allows


def checked_logit_bias(bias: object) -> dict[int, float]:
    """`bias` as {token id: bias}: keys integers or strings holding one (JSON's keys), biases numbers in [-100, 100]."""
    if not isinstance(bias, dict):
        raise TypeError(f"logit_bias must be a map from token id to bias, got {bias!r}")
    if len(bias) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias takes at most {MAX_LOGIT_BIAS} token ids, got {len(bias)}")
    checked = {}
    for key, value in bias.items():
        token = _token_id(key)
        if token is None:
            raise ValueError(f"logit_bias key {key!r} is not a token id: keys are integers >= 0 (as strings in JSON)")
        if not _is_number(value) or not -100 <= value <= 100:
            raise ValueError(f"logit_bias[{key!r}] = {value!r}: a bias must be a number in [-100, 100]")
        checked[token] = float(value)
    return checked


def _token_id(key: object) -> int | None:
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    return key if isinstance(key, int) and not isinstance(key, bool) and key >= 0 else None


@dataclass(frozen=True)
class GenerationOptions(SamplingParams):
    """Everything a generation may be asked for besides its prompt: how tokens are sampled, how many, when to stop,
    and what shape the output must take. Every interface takes these names; `from_options` checks them."""

    max_new_tokens: int = field(default=50, metadata={"help": "Most tokens to generate."})
    seed: Optional[int] = field(default=None, metadata={"help": "Random seed for reproducible sampling."})
    stop: Union[str, list[str], None] = field(
        default=None, metadata={"help": 'Strings that end the generation (--stop \'["\\n\\n", "###"]\').'}
    )
    num_samples: int = field(default=1, metadata={"help": "Samples of the prompt to draw (they share one prefill)."})
    logprobs: bool = field(default=False, metadata={"help": "Report the log-probability of every generated token."})
    schema: Union[dict, type, str, None] = field(
        default=None,
        metadata={"help": "JSON schema (a dict, a pydantic class or llm's 'name, age int' syntax) the output obeys."},
    )
    regex: Optional[str] = field(default=None, metadata={"help": "Regular expression the whole output matches."})
    grammar: Optional[str] = field(default=None, metadata={"help": "Lark grammar the output is a sentence of."})
    adapter: Optional[str] = field(
        default=None,
        metadata={"help": "LoRA adapter to generate with, by name ('base': none; default: the active)."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool)):
            raise TypeError(f"seed must be an integer or None, got {self.seed!r}")
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if stops is not None and (not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) for s in stops)):
            raise TypeError(f"stop must be a string or a list of strings, got {self.stop!r}")
        if not isinstance(self.num_samples, int) or isinstance(self.num_samples, bool) or self.num_samples < 1:
            raise ValueError(f"num_samples must be an integer >= 1, got {self.num_samples!r}")
        given = [name for name in ("schema", "regex", "grammar") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of schema, regex and grammar, got {' and '.join(given)}")

    @classmethod
    def from_options(cls, **options: Any) -> GenerationOptions:
        """The options named in keyword arguments; an unknown name is a TypeError that lists the accepted ones."""
        known = option_names()
        unknown = [name for name in options if name not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"unknown generation option {unknown[0]!r}{hint}; accepted: {', '.join(known)}")
        return cls(**options)

    @property
    def sampling(self) -> SamplingParams:
        """The options that choose each token."""
        return SamplingParams(**{f.name: getattr(self, f.name) for f in fields(SamplingParams)})

    @property
    def stop_strings(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


def option_names() -> tuple[str, ...]:
    """The names of the generation options, in their order."""
    return tuple(f.name for f in fields(GenerationOptions))


def with_options(
    names: Iterable[str] | None = None, defaults: dict[str, Any] | None = None, types: dict[str, Any] | None = None
) -> Callable[[Callable], Callable]:
    """Give a function that takes `**options` the generation options as keyword parameters in its signature (and
    their help under its docstring's "Args:"), so that help(), IDEs and jsonargparse's CLI show them.

    names: the options it takes (default: all); defaults and types: its own, where they differ from the dataclass's.
    """
    chosen = [f for f in fields(GenerationOptions) if names is None or f.name in set(names)]
    defaults = defaults or {}
    types = {**typing.get_type_hints(GenerationOptions), **(types or {})}  # real types, not the strings of `f.type`

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in params}
        for f in chosen:
            if f.name in taken:
                continue
            default = defaults.get(f.name, f.default if f.default is not MISSING else None)
            kind = inspect.Parameter.KEYWORD_ONLY
            params.append(inspect.Parameter(f.name, kind, default=default, annotation=types[f.name]))
        fn.__signature__ = signature.replace(parameters=params)
        fn.__doc__ = _with_option_help(fn.__doc__ or "", [f for f in chosen if f.name not in taken])
        return fn

    return decorate


def _with_option_help(doc: str, options: Sequence[Any]) -> str:
    """`doc` with one "name: help" line per option added at the end of its "Args:" section (made if missing)."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    if "Args:" not in lines:
        lines += ["", "Args:"]
    at = lines.index("Args:") + 1
    while at < len(lines) and (lines[at].startswith(" ") or not lines[at]):
        at += 1
    while lines[at - 1] == "":
        at -= 1
    added = [f"    {f.name}: {f.metadata.get('help', '')}" for f in options]
    return "\n".join(lines[:at] + added + lines[at:]) + "\n"
