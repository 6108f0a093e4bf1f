"""Command line: argument parsing only; the work is done by compare, trained, generate."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from tunebench.config import PRESETS, load_config
from tunebench.errors import TunebenchError
from tunebench.methods import METHODS


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESETS, help="shipped settings: demo (offline CPU, "
                        "default), wide (all eight methods), tuned (learning rates searched, equal token budget), "
                        "seed (the original study), smoke (tiny, for tests)")
    parser.add_argument("--config", help="a YAML file of settings, applied after the preset")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. method.lora.r=16 train.lr=3e-4")
    parser.add_argument("--runs-dir", default="runs", help="folder that holds run folders (default: runs)")
    parser.add_argument("--name", help="run folder name (default: <preset>-<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunebench", description="Compare fine-tuning methods for summarization.")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="baselines + every configured method, one run folder")
    _config_args(compare)
    compare.add_argument("--seeds", help="repeat every method with these train seeds, e.g. 0,1,2")
    compare.add_argument("--resume", metavar="RUN", help="continue a killed run: finished methods are kept, the "
                         "method in progress continues from its last checkpoint")
    train = sub.add_parser("train", help="train and evaluate one method")
    train.add_argument("--seeds", help="repeat with these train seeds, e.g. 0,1,2")
    train.add_argument("--resume", metavar="RUN", help="continue a killed `tunebench train` run")
    train.add_argument("--method", help=f"one of {', '.join(METHODS)} (not needed with --resume)")
    _config_args(train)
    evaluate = sub.add_parser("evaluate", help="re-evaluate a trained method: RUN/METHOD")
    evaluate.add_argument("target", help="e.g. runs/demo-20261128-101500/lora")
    evaluate.add_argument("--quiet", action="store_true")
    summarize = sub.add_parser("summarize", help="summarize new text with a trained method")
    summarize.add_argument("--from", dest="source", required=True, help="RUN/METHOD")
    summarize.add_argument("file", help="a text file holding one article, or - for standard input")
    report = sub.add_parser("report", help="rebuild report.md, report.html, plots and TensorBoard logs from "
                            "results.json; several runs are merged into one comparison")
    report.add_argument("runs", nargs="+", help="run folders")
    report.add_argument("--out", help="folder for a merged report (default: runs/merged-<timestamp>)")
    sub.add_parser("fetch", help="prepare the offline default: convert the embedded model, fetch the XSum sample")
    data = sub.add_parser("data", help="look at the data before training")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    show = data_sub.add_parser("show", help="rows kept/skipped, token lengths, cost and examples per split")
    _config_args(show)
    return parser


def _run_dir(args: argparse.Namespace, preset: str) -> Path:
    name = args.name or f"{preset}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(args.runs_dir) / name
    if (run_dir / "results.json").exists():
        raise TunebenchError(f"run folder {run_dir} already holds results; choose another --name")
    return run_dir


def _seeds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TunebenchError(f"--seeds '{text}' must be whole numbers separated by commas, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise TunebenchError(f"--seeds '{text}' must list distinct seeds, e.g. 0,1,2")
    return seeds


def cmd_compare(args: argparse.Namespace, methods: list[str] | None = None) -> None:
    from tunebench.compare import run_compare
    from tunebench.report import console_summary
    from tunebench.results import read_results

    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "results.json").is_file():
            raise TunebenchError(f"cannot resume '{args.resume}': it has no config.yaml and results.json; give a "
                                 "run folder written by `tunebench compare`")
        cfg = load_config(config_file=str(run_dir / "config.yaml"))
        run_compare(cfg, run_dir, show_progress=not args.quiet, resume=True)
        print(console_summary(read_results(run_dir)))
        return
    preset = args.preset or ("demo" if not args.config else None)
    overrides = list(args.set)
    if methods is not None:
        overrides += [f"methods=[{','.join(methods)}]", "eval.baselines=[]"]
    cfg = load_config(preset, args.config, overrides)
    run_dir = _run_dir(args, preset or "custom")
    run_compare(cfg, run_dir, show_progress=not args.quiet, seeds=_seeds(args.seeds))
    print(console_summary(read_results(run_dir)))
    print(f"tunebench: wrote {run_dir}/ (results.json, report.md, report.html, plots/, tb/, predictions, weights)")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tunebench.compare import evaluate_tuned, prepare
    from tunebench.publish import write_outputs
    from tunebench.results import ResultsFile
    from tunebench.trained import load_trained, split_target

    run_dir, method, name = split_target(args.target)
    cfg, tuned, tokenizer = load_trained(run_dir, method, name)
    bench, _ = prepare(cfg, run_dir, show_progress=not args.quiet, model=(tuned.lm, tokenizer))
    recorded = json.loads((run_dir / "splits.json").read_text())["test"]
    if bench.splits.ids()["test"] != recorded:
        raise TunebenchError(f"the test articles of {run_dir} can no longer be rebuilt from its data source; "
                             "the source changed since the run")
    tuned.to(bench.runtime.device)
    evaluation, phase = evaluate_tuned(bench, tuned, name)
    results = ResultsFile.load(run_dir / "results.json")
    data = results.data
    record = next((r for r in data["records"] if r["name"] == name), {"name": name, "kind": "method", "phases": {}})
    record.update(status="SUCCESS", eval=evaluation)
    record.setdefault("phases", {})["generation"] = phase
    results.add(record)
    write_outputs(results.data, run_dir)
    rouge = evaluation["rouge"]
    print(f"{name}: " + ", ".join(f"{k} {v['mean']:.2f}" for k, v in rouge.items()))


def cmd_summarize(args: argparse.Namespace) -> None:
    from tunebench.data.format import encode_prompt
    from tunebench.generate import generate_summaries
    from tunebench.trained import load_trained, split_target

    run_dir, method, name = split_target(args.source)
    if args.file == "-":
        text = sys.stdin.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise TunebenchError(f"input file '{args.file}' does not exist; give a text file or - for stdin")
        text = path.read_text(encoding="utf-8")
    cfg, tuned, tokenizer = load_trained(run_dir, method, name)
    prompt = encode_prompt(tokenizer, text, cfg.data.separator, cfg.data.max_article_tokens)
    out = generate_summaries(tuned, tokenizer, [prompt], 1, cfg.eval)
    print(out.texts[0])


def cmd_data_show(args: argparse.Namespace) -> None:
    from tunebench.data.show import describe_data

    print(describe_data(load_config(args.preset or ("demo" if not args.config else None), args.config, args.set)))


def cmd_report(args: argparse.Namespace) -> None:
    from tunebench.cache import atomic_write_json
    from tunebench.publish import write_outputs
    from tunebench.results import merge_results, read_results

    runs = [Path(r) for r in args.runs]
    loaded = [(run.name, read_results(run)) for run in runs]
    if len(loaded) == 1:
        out, data = runs[0], loaded[0][1]
    else:
        out = Path(args.out) if args.out else Path("runs") / f"merged-{datetime.now():%Y%m%d-%H%M%S}"
        data = merge_results(loaded)
        atomic_write_json(out / "results.json", data)
    write_outputs(data, out)
    print(f"tunebench: wrote {out}/report.md, report.html, plots/, tb/")


def cmd_fetch(_: argparse.Namespace) -> None:
    from tunebench.data.sources import fetch_xsum_sample
    from tunebench.models import EMBEDDED, embedded_model_dir

    print(f"tunebench: XSum sample at {fetch_xsum_sample()}")
    for spec in EMBEDDED:
        print(f"tunebench: {spec} at {embedded_model_dir(spec)}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compare":
            cmd_compare(args)
        elif args.command == "train":
            if not args.method and not args.resume:
                raise TunebenchError(f"train needs --method ({', '.join(METHODS)}) or --resume RUN")
            cmd_compare(args, methods=None if args.resume else [args.method])
        elif args.command == "evaluate":
            cmd_evaluate(args)
        elif args.command == "summarize":
            cmd_summarize(args)
        elif args.command == "fetch":
            cmd_fetch(args)
        elif args.command == "report":
            cmd_report(args)
        elif args.command == "data":
            cmd_data_show(args)
    except TunebenchError as exc:
        print(f"tunebench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tunebench: interrupted; finished records are in the run's results.json; continue with "
              "`tunebench compare --resume RUN`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
