import re
import subprocess
import sys

import pytest

from tunebench.config import PRESETS, apply_override, load_config, to_dict
from tunebench.errors import TunebenchError
from tunebench.methods import METHODS


@pytest.mark.parametrize("preset", PRESETS)
def test_every_shipped_preset_loads(preset):
    cfg = load_config(preset)
    expected = list(METHODS) if preset in ("wide", "smoke") else ["prompt-tuning", "lora", "last-block"]
    assert cfg.methods == expected


def test_reading_and_checking_a_config_loads_neither_torch_nor_peft():
    code = ("import sys; from tunebench.config import load_config; "
            "[load_config(p) for p in ('demo', 'wide', 'seed', 'smoke')]; "
            "print(sorted(m for m in ('torch', 'peft', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("override, message", [
    ("method.dora.r=0", "config key 'method.dora.r' must be >= 1, got 0"),
    ("method.ia3.target_modules=[]", "config key 'method.ia3.target_modules' must list at least one entry"),
    ("method.prefix_tuning.init=zeros", "config key 'method.prefix_tuning.init' must be one of text, random"),
    ("method.bitfit.norms=sometimes", "config key 'method.bitfit.norms' must be one of auto, always, never"),
    ("method.full.lr=0", "config key 'method.full.lr' must be a finite number > 0, got 0.0"),
    ("method.last-block.num_blocks=0", "config key 'method.last_block.num_blocks' must be >= 1, got 0"),
    ("method.lora.dropout=1", "config key 'method.lora.dropout' must be in [0, 1), got 1.0"),
    ("method.prompt_tuning.num_virtual_tokens=0", "config key 'method.prompt_tuning.num_virtual_tokens' must be >= 1"),
])
def test_each_method_checks_its_own_settings(override, message):
    with pytest.raises(TunebenchError, match=re.escape(message)):
        load_config("smoke", overrides=[override])


def test_seed_preset_is_the_original_study():
    cfg = load_config("seed")
    assert cfg.model.name == "gpt2" and cfg.data.fraction == 0.1
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.warmup_steps) == (20, 8, 1e-4, 100)
    assert (cfg.data.max_article_tokens, cfg.data.max_summary_tokens) == (512, 128)
    pt, lora = cfg.method.prompt_tuning, cfg.method.lora
    assert (pt.num_virtual_tokens, pt.init, pt.init_range) == (20, "uniform", 0.5)
    assert (lora.r, lora.alpha, lora.target_modules, lora.init_a) == (8, 32, ["attention"], "gaussian")
    assert cfg.method_lr("lora") == 1e-4


def test_dotted_overrides_are_typed_and_hyphens_accepted():
    cfg = load_config("smoke", overrides=["method.lora.r=16", "train.lr=3e-4", "method.prompt-tuning.lr=0.1",
                                          "methods=[lora]", "eval.baselines=[]"])
    assert cfg.method.lora.r == 16 and cfg.train.lr == 3e-4 and cfg.methods == ["lora"]
    assert cfg.method_lr("prompt-tuning") == 0.1 and cfg.method_lr("lora") == 3e-4
    assert cfg.eval.baselines == []


@pytest.mark.parametrize("override, message", [
    ("trian.lr=1", "unknown config key 'trian' (did you mean 'train'?)"),
    ("method.lora.alhpa=4", "unknown config key 'method.lora.alhpa' (did you mean 'alpha'?)"),
    ("method.lora.r=abc", "config key 'method.lora.r' must be an integer, got 'abc'"),
    ("train.lr=-1", "config key 'train.lr' must be a finite number > 0"),
    ("methods=[lora,qlora]", "unknown method 'qlora'"),
    ("train.precision=fp8", "config key 'train.precision' must be one of auto, bf16, fp32"),
    ("data.fraction=1.5", "config key 'data.fraction' must be in (0, 1]"),
    ("train.device=gpu", "config key 'train.device' must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ("train.lr", "must look like key=value"),
    ("train.parallel=batches", "config key 'train.parallel' must be one of data, jobs"),
    ("train.parallel=jobs train.fsdp=true", "train.parallel=jobs trains each method on one process and train.fsdp "
                                            "shards one method over the processes: set one of them"),
])
def test_bad_settings_name_the_key(override, message):
    with pytest.raises(TunebenchError) as info:
        load_config("smoke", overrides=override.split(" "))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_preset_and_missing_config_file(tmp_path):
    with pytest.raises(TunebenchError, match="unknown preset 'demp'"):
        load_config("demp")
    with pytest.raises(TunebenchError, match="does not exist"):
        load_config(config_file=str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [\n")
    with pytest.raises(TunebenchError, match="not valid YAML"):
        load_config(config_file=str(bad))


def test_config_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\nmethod:\n  lora:\n    r: 2\n")
    cfg = load_config("smoke", str(path), ["train.epochs=5"])
    assert cfg.train.epochs == 5 and cfg.method.lora.r == 2 and cfg.method.lora.alpha == 8  # smoke kept


def test_override_into_a_sub_config_keeps_siblings():
    cfg = load_config("seed")
    apply_override(cfg, "method.lora.alpha=16")
    assert cfg.method.lora.r == 8 and cfg.method.lora.alpha == 16.0


def test_asking_for_a_gpu_that_is_not_there_says_so(monkeypatch):
    from tunebench.runtime import resolve_runtime

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(TunebenchError, match="train.device=cuda but torch sees no CUDA GPU"):
        resolve_runtime("auto", device="cuda")
    assert resolve_runtime("auto", device="cpu").device == "cpu"


def test_config_show_lists_every_setting_with_value_type_and_description(capsys):
    from tunebench.cli import main
    from tunebench.settings_doc import describe

    assert main(["config", "show", "--preset", "demo", "--set", "method.lora.r=16"]) == 0
    out = capsys.readouterr().out
    rows = describe(load_config("demo", overrides=["method.lora.r=16"]))
    assert len(out.splitlines()) == len(rows)
    assert all(description for _, _, _, description in rows), "a setting without a docstring"
    line = next(line for line in out.splitlines() if line.startswith("method.lora.r = "))
    assert "16" in line and "(int)" in line and "Rank of the update B A." in line
    flat = {}

    def walk(node, prefix=""):
        for key, value in node.items():
            walk(value, f"{prefix}{key}.") if isinstance(value, dict) else flat.setdefault(prefix + key, value)

    walk(to_dict(load_config("demo")))
    assert {key for key, _, _, _ in rows} == set(flat)


def test_eval_test_loss_of_older_configs_is_read_as_eval_metrics():
    """Run folders written before eval.metrics hold eval.test_loss: true/false; they still load (summarize, evaluate,
    report) with the same meaning."""
    from tunebench.config import load_config

    assert "test_loss" not in load_config("smoke", overrides=["eval.test_loss=false"]).eval.metrics
    on = load_config("smoke", overrides=["eval.metrics=[rouge]", "eval.test_loss=true"]).eval.metrics
    assert on == ["rouge", "test_loss"]
