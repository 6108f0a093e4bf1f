"""Typed configuration: dataclasses, YAML presets, dotted overrides. Unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tunebench import metrics
from tunebench.errors import TunebenchError, require_at_least, require_choice, require_file, require_positive
from tunebench.methods import DEFAULT_METHODS, METHODS
from tunebench.metrics import DEFAULT_METRICS
from tunebench.track import check_trackers

PRESETS = ("demo", "wide", "tuned", "seed", "smoke")
BASELINES = ("lead", "zero-shot", "zero-shot-chat")


@dataclass
class ModelConfig:
    name: str = "embedded:smollm2-135m"
    """Hub id (`gpt2`), local Hugging Face directory, `embedded:smollm2-135m`, or `random:<arch>` (tests)."""
    trust_remote_code: bool = False
    """Let transformers run code shipped with a Hub model (off: only architectures transformers has)."""


@dataclass
class DataConfig:
    source: str = "xsum-sample"
    """`xsum-sample` (embedded), `hf:<dataset>[:<config>]`, a CSV/JSONL/JSON/Parquet file, or a folder of
    per-split files (train.csv, validation.csv, test.csv: the Kaggle CNN/DailyMail layout)."""
    text_column: str | None = None
    """Column holding the article (None: article, document, text, story, dialogue or content)."""
    summary_column: str | None = None
    """Column holding the summary (None: highlights, summary, abstract or headline)."""
    id_column: str | None = None
    """Column holding a row id (None: id or guid if present, else the row number)."""
    seed: int = 0
    """Seed of the fraction, the train/validation/test split and the caps. Range: >= 0."""
    fraction: float = 1.0
    """Seeded fraction of the articles of each split (the study's "10%" is 0.1). Range: 0 < fraction <= 1."""
    n_val: int = 50
    """Validation articles: carved from the data, or the first of a seeded shuffle of the source's split.
    Range: >= 0."""
    n_test: int = 100
    """Test articles: carved from the data, or the first of a seeded shuffle of the source's split. Range: >= 1."""
    max_train: int | None = None
    """Cap on training pairs (None: all pairs not used for validation or test). Range: >= 1, or None."""
    min_article_words: int = 20
    """Articles with fewer words are skipped as too short to summarize. Range: >= 0."""
    strip_bylines: bool | None = None
    """Strip CNN datelines and Daily Mail bylines (None: on for CNN/DailyMail, off otherwise)."""
    max_article_tokens: int = 512
    """Article tokens kept in the prompt (the article is cut to fit; the separator follows). Range: >= 1."""
    max_summary_tokens: int | str = "auto"
    """Reference summary tokens trained on (longer ones are cut; EOS follows); `auto`: the 95th percentile of the
    training summaries' lengths, rounded up to a multiple of 8 (data/task.py). Range: >= 1, or auto."""
    separator: str = "\nTL;DR:\n"
    """Text between article and summary; the same prompt is used by zero-shot and every method."""


BUDGETS = ("epochs", "steps", "tokens", "seconds")


@dataclass
class TrainConfig:
    budget: str = "epochs"
    """What every method gets the same of: `epochs` (train.epochs passes over the data), `steps`
    (train.max_steps optimizer steps), `tokens` (train.max_tokens training tokens, prompts included) or
    `seconds` (train.max_seconds of training, validation excluded; the schedule is planned over train.epochs)."""
    epochs: int = 1
    """Passes over the training data (the budget with budget=epochs; the most there may be with budget=seconds).
    Range: >= 1."""
    max_tokens: int | None = None
    """The budget with budget=tokens: training tokens each method sees (the last step may go past it).
    Range: >= 1, or None."""
    max_seconds: float | None = None
    """The budget with budget=seconds: wall seconds of training each method gets.
    Range: a finite number > 0, or None."""
    batch_size: int = 8
    """Training pairs per micro-batch (under torchrun: the global batch, shared by the processes). Range: >= 1."""
    grad_accum_steps: int = 1
    """Micro-batches per optimizer step. Range: >= 1."""
    micro_batch_size: int | None = None
    """Most pairs one process runs through the model at once: each micro-batch (its share of it under torchrun)
    goes forward and backward in pieces of this many, the gradients adding up to the whole batch's (results equal
    within float tolerance; less activation memory, more passes). None: the whole share at once. Range: >= 1, or
    None."""
    memory_limit_mb: float | None = None
    """Memory training may use (RSS on a CPU, CUDA allocated on a GPU): before the first step, one step of the
    largest batch is measured as given, then with activation checkpointing, then with micro-batches halved, and the
    first that fits trains (recorded under train.memory_plan; nothing fits: one-line error). None: as set.
    Range: a finite number > 0, or None."""
    activation_checkpointing: bool = False
    """Keep only each transformer block's input in the forward and recompute the block in the backward
    (transformers' per-layer checkpointing, torch.utils.checkpoint non-reentrant): activation memory of one block
    instead of all, for about one more forward of the blocks gradients pass through per step (a frozen trunk is not
    recomputed); every method, the frozen-trunk cache and FSDP compose with it (docs/usage.md, Memory)."""
    lr: float = 1e-4
    """Default learning rate; each method may set its own `lr`. Range: a finite number > 0."""
    warmup_steps: int = 100
    """Optimizer steps of linear warm-up before the linear decay to 0. Range: >= 0."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay. Range: a finite number >= 0."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm before each step. Range: a finite number > 0."""
    max_steps: int | None = None
    """The budget with budget=steps; with other budgets, a cap on optimizer steps (None: no cap).
    Range: >= 1, or None."""
    seed: int = 0
    """Seed of the method's initialisation and the training data order (the split has data.seed). Range: >= 0."""
    precision: str = "auto"
    """`auto` (bf16 autocast on a GPU that supports it, or on a CPU whose bf16 matmuls are measured >= 1.25x as fast
    as fp32; the reason is recorded), `bf16` or `fp32`."""
    device: str = "auto"
    """`auto` (the GPU when there is one), `cpu`, `cuda` or `cuda:N`."""
    threads: int | None = None
    """torch CPU threads (None: torch's default). Range: >= 1, or None."""
    checkpoint_every_steps: int = 0
    """Save the full training state every N optimizer steps (0: at each epoch end only) for --resume. Range: >= 0."""
    cache_frozen: bool = True
    """With more than one epoch, compute the output of frozen lower blocks (when only the top of the model
    trains) once and reuse it every epoch; false recomputes it at every step (same weights within float
    tolerance, slower)."""
    fsdp: bool = False
    """Under torchrun: load, train and evaluate every record's model sharded over the processes (FSDP2, one unit
    per transformer block): parameters, gradients and AdamW state, for models that do not fit one device (rank 0
    keeps the base model's weights on its host to copy from); off: every process holds all. The frozen-trunk cache
    is not used under it."""
    parallel: str = "data"
    """Under torchrun: `data` (every process trains each method on its share of every batch) or `jobs` (the
    processes split the records: each trains and scores its own methods alone, on its own device; rank 0 gathers
    the records into one results.json). `jobs` suits many small methods; it cannot be combined with train.fsdp."""
    dist_timeout_s: float = 1800.0
    """Under torchrun: seconds any collective waits for the other ranks before the job ends with an error (a rank
    that died or hangs). Range: a finite number > 0."""
    validate_one_epoch: bool = False
    """The validation loss after each epoch picks the best epoch; with a single epoch there is nothing to pick, so
    it is skipped (saving its time) unless this is true. A learning-rate search always validates."""


@dataclass
class EvalConfig:
    batch_size: int = 16
    """Test articles decoded together (left-padded). Range: >= 1."""
    max_new_tokens: int | str = "auto"
    """Most tokens a summary may have (the cut, eval.cut, may end it earlier); `auto`: 1.25 x the 95th percentile
    of the training summaries' lengths. Range: >= 1, or auto."""
    num_beams: int = 1
    """1: greedy decoding; more: beam search. Range: >= 1."""
    no_repeat_ngram_size: int = 0
    """Forbid repeating n-grams of this size within a summary (0: off); n-grams of the article stay allowed.
    Range: >= 0."""
    length_penalty: float = 1.0
    """Beam search only: > 1 favours longer summaries, < 1 shorter ones. Range: a finite number."""
    cut: str = "auto"
    """Where a generated summary ends: `eos`, `first_line` (first non-empty line) or `blank_line`; `auto`:
    first_line when the median training summary is one line and one sentence, else blank_line."""
    max_sentences: int | None = None
    """Keep only the first n sentences of a summary after the cut (None: all). Range: >= 1, or None."""
    lead_k: int | str = "auto"
    """Lead-k baseline: the first k sentences of the article (3 is usual for CNN/DailyMail, 1 for XSum); `auto`:
    the median number of sentences of the training summaries. Range: >= 1, or auto."""
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    """What each record is scored on, per test article: metrics of tunebench.metrics (`rouge`: ROUGE-1/2/L/Lsum;
    `test_loss`: the loss on the reference summaries, one forward pass per article, no generation; `faithfulness`:
    descriptive signals, numbers and names not in the article, novel word pairs, length) or a module of your own
    on the Python path that defines METRIC (docs/metrics.md)."""
    bootstrap_resamples: int = 1000
    """Resamples for the 95% bootstrap intervals and paired tests. Range: >= 1."""
    baselines: list[str] = field(default_factory=lambda: ["lead", "zero-shot", "zero-shot-chat"])
    """`lead` (Lead-k), `zero-shot` (the base model with the methods' prompt) and `zero-shot-chat` (the base model
    through its chat template with `chat_instruction`; only for models that have a chat template)."""
    chat_instruction: str = "auto"
    """The instruction the `zero-shot-chat` baseline puts before the article; `auto`: "Summarize the following
    article in <n> sentence(s) (about <w> words).", from the median training summary."""
    decide_on: str = "rouge1"
    """The score the verdict is decided on, chosen before the run: a score key of eval.metrics (rouge1, rouge2,
    rougeL, rougeLsum, test_loss, or one of your metric's); the others are reported beside it."""
    decide: bool = True
    """Sequential evaluation: while the verdict is open (methods tied, or the best not yet separated from a
    baseline), score only the records involved on the next `eval.decide_step` unseen test articles, up to
    `eval.max_test` articles or `eval.decide_seconds`; the boundaries keep the error rate at 5% over all looks."""
    decide_step: int | None = None
    """Test articles added per look (None: data.n_test). Range: >= 1, or None."""
    max_test: int | None = None
    """Most test articles a record is scored on, the first look's included (None: 5 x data.n_test); fewer when the
    data has fewer unused articles. Range: >= 1, or None."""
    decide_seconds: float = 600.0
    """Wall seconds the extra looks may take in all; a look that would go past it is not started.
    Range: a finite number > 0."""
    serving_prompts: int = 4
    """Serving cost as deployed (serving.py): the first n test prompts decoded together in one fixed job per record,
    adapters merged where the method allows (0: no serving job). Range: >= 0."""
    serving_new_tokens: int = 32
    """Tokens each prompt of the serving job generates, exactly (EOS is suppressed until then). Range: >= 1."""


@dataclass
class SearchConfig:
    enabled: bool = False
    """Choose each method's learning rate on validation loss before it trains (search.py); the methods' own `lr`
    is then ignored and each one's `lr_range` searched."""
    trials: int = 4
    """Learning rates tried per method, log-spaced over its `lr_range`. Range: >= 1."""
    budget_fraction: float = 0.5
    """Each trial trains at most this share of the budget's steps (the schedule stays the whole budget's).
    Range: 0 < budget_fraction <= 1."""
    rungs: int = 4
    """Validation checks per trial; at each, successive halving may stop a trial that trails the others. Range: >= 1."""


@dataclass
class TrackConfig:
    to: list[str] = field(default_factory=lambda: ["tensorboard"])
    """Experiment trackers fed while the run goes (track/): `tensorboard` (RUN/tb), `mlflow` (RUN/mlflow.db, or
    MLFLOW_TRACKING_URI / track.mlflow_uri; needs mlflow-skinny), `wandb` (offline unless WANDB_MODE; needs wandb).
    [] tracks nothing (the report and results.json are written regardless)."""
    experiment: str = "tunebench"
    """The experiment (MLflow) or project (W&B) the records' runs go in."""
    mlflow_uri: str | None = None
    """MLflow tracking URI (None: MLFLOW_TRACKING_URI if set, else sqlite:///RUN/mlflow.db)."""


def _method_config() -> type:
    """`method.<name>`: one field per registered method, holding that method's own Settings dataclass."""
    fields = [(m.key, m.settings_class, field(default_factory=m.settings_class)) for m in METHODS.values()]
    return dataclasses.make_dataclass("MethodConfig", fields)


MethodConfig = _method_config()


@dataclass
class Config:
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    """Methods to train and compare, in order (see `method.<name>` for each one's settings)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    method: MethodConfig = field(default_factory=MethodConfig)  # type: ignore[valid-type]

    def method_lr(self, method: str) -> float:
        """The learning rate a method trains with: its own `lr` if set, else `train.lr`."""
        own = METHODS[method].settings(self).lr
        return self.train.lr if own is None else own


def method_key(name: str) -> str:
    """Dashes become underscores (config keys accept either spelling)."""
    return name.replace("-", "_")


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(choices)})"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one YAML value against a field's type hint; raise a message naming the key."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        if str in args and isinstance(value, str):  # `int | str`: a number, or auto (data/task.py)
            if value == "auto":
                return value
            raise TunebenchError(f"config key '{where}' must be a number or auto, got {value!r}")
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise TunebenchError(f"config key '{where}' must be a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TunebenchError(f"config key '{where}' must be a mapping, got {value!r}")
        return _apply_dict(hint(), value, where + ".")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TunebenchError(f"config key '{where}' must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TunebenchError(f"config key '{where}' must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise TunebenchError(f"config key '{where}' must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            raise TunebenchError(f"config key '{where}' must be a string, got {value!r}: YAML reads yes/no/on/off/"
                                 f"true/false as booleans; quote the text, e.g. {where}='no'")
        raise TunebenchError(f"config key '{where}' must be a string, got {value!r}")
    return value


def _apply_dict(obj: Any, data: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    if prefix == "eval." and "test_loss" in data:  # before eval.metrics (runs of tunebench <= 0.1 wrote it)
        data = _legacy_test_loss(obj, data)
    for raw_key, value in data.items():
        key = method_key(str(raw_key))
        where = f"{prefix}{raw_key}"
        if key not in names:
            raise TunebenchError(f"unknown config key '{where}'{_suggest(key, names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise TunebenchError(f"config key '{where}' must be a mapping, got {value!r}")
            setattr(obj, key, _apply_dict(dataclasses.replace(current), value, where + "."))
        else:
            setattr(obj, key, _coerce(value, hints[key], where))
    return obj


def _legacy_test_loss(ev: Any, data: dict) -> dict:
    """`eval.test_loss: true|false`, the setting eval.metrics replaced, read as adding or removing test_loss."""
    data = dict(data)
    on = data.pop("test_loss")
    if not isinstance(on, bool):
        raise TunebenchError("eval.test_loss was replaced by eval.metrics: list test_loss there (or leave it out)")
    names = [m for m in data.get("metrics", ev.metrics) if m != "test_loss"]
    data["metrics"] = names + (["test_loss"] if on else [])
    return data


def apply_override(cfg: Config, assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    if "=" not in assignment:
        raise TunebenchError(f"override '{assignment}' must look like key=value, e.g. train.lr=3e-4")
    dotted, raw = assignment.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise TunebenchError(f"override '{assignment}' has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    _apply_dict(cfg, nested, "")


def preset_text(name: str) -> str:
    if name not in PRESETS:
        raise TunebenchError(f"unknown preset '{name}'{_suggest(name, list(PRESETS))}")
    return resources.files("tunebench.presets").joinpath(f"{name}.yaml").read_text()


class _UniqueKeys(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice (line "
                                                        f"{key_node.start_mark.line + 1}); keep one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.load(text, Loader=_UniqueKeys) or {}  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise TunebenchError(f"{origin} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise TunebenchError(f"{origin} must hold a mapping of config keys, got {type(data).__name__}")
    return data


def load_config(preset: str | None = None, config_file: str | None = None,
                overrides: list[str] | None = None) -> Config:
    """Defaults <- preset <- config file <- dotted overrides, each validated; returns a checked Config."""
    cfg = Config()
    if preset:
        _apply_dict(cfg, _read_yaml(preset_text(preset), f"preset '{preset}'"), "")
    if config_file:
        path = Path(config_file)
        require_file(path, "config file", "give the path of a YAML file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TunebenchError(f"config file '{config_file}' is not UTF-8 text; give a YAML file of settings") \
                from None
        _apply_dict(cfg, _read_yaml(text, f"config file '{config_file}'"), "")
    for assignment in overrides or []:
        apply_override(cfg, assignment)
    validate(cfg)
    return cfg


COUNTS = ("data.n_test", "data.max_article_tokens", "data.max_summary_tokens", "data.max_train", "train.epochs",
          "train.batch_size", "train.grad_accum_steps", "train.micro_batch_size", "train.max_steps", "train.max_tokens",
          "train.threads", "eval.batch_size", "eval.max_new_tokens", "eval.num_beams", "eval.lead_k",
          "eval.bootstrap_resamples", "eval.max_sentences", "eval.decide_step", "eval.max_test",
          "eval.serving_new_tokens", "search.trials", "search.rungs")
"""Whole numbers >= 1 (None passes where the field allows it): zero would leave nothing to do."""
NON_NEGATIVE = ("data.seed", "train.seed", "data.n_val", "data.min_article_words", "train.warmup_steps",
                "train.checkpoint_every_steps", "eval.no_repeat_ngram_size", "eval.serving_prompts")
"""Whole numbers >= 0: seeds, and counts where 0 means "none" or "off"."""
POSITIVE = ("train.lr", "train.max_grad_norm", "train.max_seconds", "train.dist_timeout_s", "train.memory_limit_mb",
            "eval.decide_seconds")
"""Finite numbers > 0 (None passes where the field allows it): rates, norms, durations."""
FRACTIONS = ("data.fraction", "search.budget_fraction")
"""Shares in (0, 1]."""


def get_setting(cfg: Config, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(cfg, section), name)


def check_ranges(cfg: Config) -> None:
    """Every numeric setting in its documented range (the `Range:` of its docstring)."""
    for key in COUNTS:
        value = get_setting(cfg, key)
        if value != "auto":  # resolved from the data before the run (data/task.py)
            require_at_least(key, value, 1)
    for key in NON_NEGATIVE:
        require_at_least(key, get_setting(cfg, key), 0)
    for key in POSITIVE:
        require_positive(key, get_setting(cfg, key))
    for key in FRACTIONS:
        value = get_setting(cfg, key)
        if not 0 < value <= 1:  # NaN fails too
            raise TunebenchError(f"config key '{key}' must be in (0, 1], got {value}")
    if not (math.isfinite(cfg.train.weight_decay) and cfg.train.weight_decay >= 0):
        raise TunebenchError(f"config key 'train.weight_decay' must be a finite number >= 0, got "
                             f"{cfg.train.weight_decay}")
    if not math.isfinite(cfg.eval.length_penalty):
        raise TunebenchError(f"config key 'eval.length_penalty' must be a finite number, got {cfg.eval.length_penalty}")


def validate(cfg: Config) -> None:
    """Range and choice checks that types alone cannot express; each method checks its own settings."""
    for name in cfg.methods:
        if name not in METHODS:
            raise TunebenchError(f"unknown method '{name}'{_suggest(name, list(METHODS))}")
    if len(set(cfg.methods)) != len(cfg.methods):
        raise TunebenchError(f"methods lists a method twice: {cfg.methods}")
    if not cfg.methods and not cfg.eval.baselines:
        raise TunebenchError("methods=[] and eval.baselines=[] leave nothing to run; list at least one method or "
                             "baseline, e.g. --set methods=[lora]")
    check_ranges(cfg)
    for method in METHODS.values():
        settings = method.settings(cfg)
        require_positive(f"method.{method.key}.lr", settings.lr)
        low_high = settings.lr_range
        if len(low_high) != 2 or not all(math.isfinite(x) and x > 0 for x in low_high) or low_high[0] > low_high[1]:
            raise TunebenchError(f"config key 'method.{method.key}.lr_range' must be two numbers 0 < low <= high, "
                                 f"got {low_high}")
        settings.check(f"method.{method.key}")
    require_choice("train.budget", cfg.train.budget, BUDGETS)
    amount = {"steps": "max_steps", "tokens": "max_tokens", "seconds": "max_seconds"}.get(cfg.train.budget)
    if amount and getattr(cfg.train, amount) is None:
        raise TunebenchError(f"train.budget={cfg.train.budget} needs train.{amount}; set it, e.g. "
                             f"--set train.{amount}=1000")
    require_choice("train.precision", cfg.train.precision, ("auto", "bf16", "fp32"))
    require_choice("train.parallel", cfg.train.parallel, ("data", "jobs"))
    if cfg.train.parallel == "jobs" and cfg.train.fsdp:
        raise TunebenchError("train.parallel=jobs trains each method on one process and train.fsdp shards one method "
                             "over the processes: set one of them (train.fsdp=false or train.parallel=data)")
    require_choice("eval.cut", cfg.eval.cut, ("eos", "first_line", "blank_line", "auto"))
    scores = [s.key for m in metrics.chosen(cfg.eval.metrics) for s in m.scores if not s.descriptive]
    require_choice("eval.decide_on", cfg.eval.decide_on, tuple(scores))
    if cfg.eval.max_test is not None and cfg.eval.max_test < cfg.data.n_test:
        raise TunebenchError(f"eval.max_test ({cfg.eval.max_test}) is below data.n_test ({cfg.data.n_test}), the "
                             "articles of the first look; raise it or lower data.n_test")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.train.device):
        raise TunebenchError(f"config key 'train.device' must be auto, cpu, cuda or cuda:N; got '{cfg.train.device}'")
    check_trackers(cfg.track.to)
    for baseline in cfg.eval.baselines:
        if baseline not in BASELINES:
            raise TunebenchError(f"unknown baseline '{baseline}' in eval.baselines"
                                 f"{_suggest(baseline, list(BASELINES))}")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
