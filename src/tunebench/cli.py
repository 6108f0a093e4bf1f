"""Command line: argument parsing, dispatch to each subcommand's function (`set_defaults(func=...)`), and bad input
as one line; the work is done by compare, evaluate, trained, export, report and data."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from datetime import datetime
from pathlib import Path

from tunebench.config import PRESETS, load_config
from tunebench.errors import TunebenchError, is_folder_name
from tunebench.files import check_runs_dir
from tunebench.methods import METHODS


class _Parser(argparse.ArgumentParser):
    """Misuse of the command line is one line, as every other bad input: `tunebench: error: ...`, exit code 2."""

    def error(self, message: str):
        if message.endswith("expected one argument"):  # e.g. --seeds -1,2: a value that starts with '-'
            message += " (a value that starts with '-' is read as an option: write it after '=', e.g. --seeds=0,1)"
        raise TunebenchError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _config_args(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """--preset, --config, --set; with `run`, also what names a run folder and --quiet."""
    parser.add_argument("--preset", choices=PRESETS, help="shipped settings: demo (offline CPU, "
                        "default), wide (all eight methods), tuned (learning rates searched, equal token budget), "
                        "seed (the original study), smoke (tiny, for tests)")
    parser.add_argument("--config", help="a YAML file of settings, applied after the preset")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted overrides, e.g. method.lora.r=16 train.lr=3e-4; `tunebench config show` "
                        "lists every setting with its value, type and description")
    if not run:
        return
    parser.add_argument("--runs-dir", default="runs", help="folder that holds run folders (default: runs)")
    parser.add_argument("--name", help="run folder name (default: <preset>-<timestamp>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tunebench", description="Compare fine-tuning methods for summarization.")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="baselines + every configured method, one run folder")
    compare.set_defaults(func=cmd_compare)
    _config_args(compare)
    compare.add_argument("--seeds", help="repeat every method with these train seeds, e.g. 0,1,2")
    compare.add_argument("--resume", metavar="RUN", help="continue a killed run: finished methods are kept, the "
                         "method in progress continues from its last checkpoint")
    train = sub.add_parser("train", help="train and evaluate one method")
    train.set_defaults(func=cmd_train)
    train.add_argument("--seeds", help="repeat with these train seeds, e.g. 0,1,2")
    train.add_argument("--resume", metavar="RUN", help="continue a killed `tunebench train` run")
    train.add_argument("--method", help=f"one of {', '.join(METHODS)} (not needed with --resume)")
    _config_args(train)
    evaluate = sub.add_parser("evaluate", help="score a trained method again: in its run, or on other data (--data) "
                              "in a new folder")
    evaluate.set_defaults(func=cmd_evaluate)
    evaluate.add_argument("target", help="RUN/METHOD, e.g. runs/demo-20261128-101500/lora")
    evaluate.add_argument("--data", metavar="SOURCE", help="score on this data source instead (anything data.source "
                          "takes: a CSV/JSONL/JSON/Parquet file, a folder, hf:<dataset>, xsum-sample); the baselines "
                          "are scored too, the run stays untouched")
    evaluate.add_argument("--n", type=int, help="test articles taken from SOURCE (default: the run's data.n_test)")
    evaluate.add_argument("--out", help="folder for the new results (default: RUN-METHOD-on-SOURCE next to RUN)")
    evaluate.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                          help="with --data: data settings for SOURCE, e.g. data.text_column=body")
    evaluate.add_argument("--quiet", action="store_true")
    summarize = sub.add_parser("summarize", help="summarize new text with a trained method")
    summarize.set_defaults(func=cmd_summarize)
    summarize.add_argument("--from", dest="source", required=True, help="RUN/METHOD, or RUN/pick: the method "
                           "the run's verdict picked")
    summarize.add_argument("file", help="a text file holding one article, - for standard input, or a CSV/JSONL/JSON/"
                           "Parquet file of articles (then one JSON line per article: id, summary)")
    summarize.add_argument("--column", help="the column holding the articles (default: article, document, text, "
                           "dialogue or content)")
    summarize.add_argument("--out", help="write the JSON lines to this file instead of standard output")
    summarize.add_argument("--quiet", action="store_true", help="no progress bar")
    summarize.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                           help="decoding settings for these summaries, e.g. eval.max_new_tokens=60 eval.num_beams=4 "
                           "(only eval.*: the rest describes how the method was trained)")
    export = sub.add_parser("export", help="a trained method as a standalone Hugging Face model folder (adapters "
                            "merged into the weights), with a model card")
    export.set_defaults(func=cmd_export)
    export.add_argument("target", help="RUN/METHOD (or RUN/pick), e.g. runs/demo-20261128-101500/lora")
    export.add_argument("out", help="a new folder")
    report = sub.add_parser("report", help="rebuild report.md, report.html, plots and TensorBoard logs from "
                            "results.json; several runs are merged into one comparison")
    report.set_defaults(func=cmd_report)
    report.add_argument("runs", nargs="+", help="run folders")
    report.add_argument("--out", help="a new folder for a merged report (default: runs/merged-<timestamp>); never "
                        "a folder that holds results")
    report.add_argument("--allow-different", action="store_true", help="merge runs that differ in model, test "
                        "articles, decoding or data: rows labelled by run, differences named in the report")
    sub.add_parser("fetch", help="prepare the offline default: convert the embedded model, fetch the XSum "
                   "sample").set_defaults(func=cmd_fetch)
    config = sub.add_parser("config", help="look at the settings")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show_config = config_sub.add_parser("show", help="every setting: its value (after --preset, --config and "
                                        "--set), its type and what it does")
    show_config.set_defaults(func=cmd_config_show)
    _config_args(show_config, run=False)
    data = sub.add_parser("data", help="look at the data before training")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    show = data_sub.add_parser("show", help="rows kept/skipped, token lengths, cost and examples per split")
    show.set_defaults(func=cmd_data_show)
    _config_args(show, run=False)
    show.add_argument("--estimate", action="store_true", help="also estimate how long `compare` takes on this "
                      "machine, from a few training steps and one generation batch per method (loads the model)")
    return parser


def _run_dir(args: argparse.Namespace, preset: str) -> Path:
    """The new run folder, checked before any model loads: --name is one folder name, the folder does not exist
    yet, --runs-dir is a writable folder. (It is made, exclusively, only once the run's input is known good.)"""
    name = f"{preset}-{datetime.now():%Y%m%d-%H%M%S}" if args.name is None else args.name
    if not is_folder_name(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise TunebenchError(f"--name {shown!r} must be one folder name (no '/', not empty, '.' or '..', at most 255 "
                             "bytes); the run folder goes in --runs-dir, e.g. --runs-dir runs --name my-run")
    if not args.runs_dir:
        raise TunebenchError("--runs-dir is empty; give a folder, e.g. --runs-dir runs")
    run_dir = Path(args.runs_dir) / name
    if run_dir.exists() or run_dir.is_symlink():
        raise TunebenchError(f"run folder {run_dir} already exists; choose another --name (or continue it with "
                             f"`tunebench compare --resume {run_dir}`)")
    check_runs_dir(run_dir)
    return run_dir


def _writers_run_dir(args: argparse.Namespace, preset: str) -> Path:
    """The run folder as rank 0 names and checks it (its clock), on every rank; its refusal is every rank's."""
    from tunebench import distributed

    return distributed.from_writer(distributed.writer_decides(lambda: _run_dir(args, preset)))


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TunebenchError(f"--seeds '{text}' must be whole numbers separated by commas, e.g. 0,1,2") from None
    if any(seed < 0 for seed in seeds):
        raise TunebenchError(f"--seeds '{text}' must be seeds >= 0, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds) or not seeds:
        raise TunebenchError(f"--seeds '{text}' must list distinct seeds, e.g. 0,1,2")
    return seeds


SYSTEM_LIMITS = {errno.ENOSPC: "free some space (or use --runs-dir elsewhere) and run the command again",
                 errno.EDQUOT: "free some of your quota and run the command again",
                 errno.ENAMETOOLONG: "use a shorter name or path",
                 errno.EROFS: "the file system is read-only: use --runs-dir or --out elsewhere",
                 errno.EACCES: "you may not write there: use --runs-dir or --out elsewhere"}
"""Operating-system refusals that are the machine's limits, not tunebench's bugs: one line, exit 2."""
RUNNING: list[Path] = []
"""The run folder a compare/train is writing (for the message on Ctrl-C)."""


def _imports_done(args: argparse.Namespace) -> None:
    """A command's modules are imported and nothing else is made yet: in tunebench's own process (`main()` reading
    the command line, not a call with `argv`, e.g. from a test), the objects alive now are taken out of the garbage
    collector's scans (resources.settle_imports: faster collections between methods and a faster exit)."""
    if getattr(args, "whole_process", False):
        from tunebench.resources import settle_imports

        settle_imports()


def cmd_compare(args: argparse.Namespace, methods: list[str] | None = None) -> None:
    from tunebench import distributed
    from tunebench.compare import run_compare
    from tunebench.report.markdown import console_summary
    from tunebench.results import read_results, read_splits

    _imports_done(args)
    if getattr(args, "resume", None):
        run_dir = Path(args.resume)
        given = [flag for flag, value in (("--set", args.set), ("--preset", args.preset), ("--config", args.config),
                                          ("--seeds", args.seeds), ("--method", getattr(args, "method", None)))
                 if value]
        if given:
            raise TunebenchError(f"--resume continues {run_dir} with the config it was started with, which is fixed: "
                                 f"{', '.join(given)} cannot change it; start a new run instead")
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "results.json").is_file():
            raise TunebenchError(f"cannot resume '{args.resume}': it has no config.yaml and results.json; give a "
                                 "run folder written by `tunebench compare`")
        read_results(run_dir)  # damaged read-back files are refused before any model loads
        read_splits(run_dir)
        cfg = load_config(config_file=str(run_dir / "config.yaml"))
        RUNNING.append(run_dir)
        run_compare(cfg, run_dir, show_progress=not args.quiet, resume=True)
        if distributed.is_writer():
            print(console_summary(read_results(run_dir)))
        return
    preset = args.preset or ("demo" if not args.config else None)
    overrides = list(args.set)
    if methods is not None:
        overrides += [f"methods=[{','.join(methods)}]", "eval.baselines=[]"]
    cfg = load_config(preset, args.config, overrides)
    distributed.setup(cfg.train.dist_timeout_s)
    run_dir = _writers_run_dir(args, preset or "custom")
    RUNNING.append(run_dir)
    run_compare(cfg, run_dir, show_progress=not args.quiet, seeds=_seeds(args.seeds))
    if distributed.is_writer():
        data = read_results(run_dir)
        print(console_summary(data))
        print(f"tunebench: wrote {run_dir}/ (results.json, report.md, report.html, plots/, tb/, predictions, "
              "weights)")
        if (data.get("verdict") or {}).get("pick"):
            print(f"tunebench: use the pick ({data['verdict']['pick']}): tunebench summarize --from {run_dir}/pick "
                  f"ARTICLES.csv, or tunebench export {run_dir}/pick FOLDER")


def cmd_train(args: argparse.Namespace) -> None:
    if not args.method and not args.resume:
        raise TunebenchError(f"train needs --method ({', '.join(METHODS)}) or --resume RUN")
    cmd_compare(args, methods=None if args.resume else [args.method])


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.data:
        from tunebench.evaluate import evaluate_on
        from tunebench.report.markdown import console_summary
        from tunebench.results import read_results

        _imports_done(args)
        if args.n is not None and args.n < 1:
            raise TunebenchError(f"--n {args.n}: give at least 1 test article")
        out = evaluate_on(args.target, args.data, args.n, Path(args.out) if args.out else None, args.set,
                          show_progress=not args.quiet)
        print(console_summary(read_results(out)))
        print(f"tunebench: wrote {out}/ (results.json, report.md, report.html, predictions)")
        return
    if args.n is not None or args.out or args.set:
        raise TunebenchError("--n, --out and --set go with --data SOURCE; without it the method is scored again "
                             "on its run's own test articles")
    from tunebench.evaluate import evaluate_in_run

    _imports_done(args)
    name, evaluation, described = evaluate_in_run(args.target, show_progress=not args.quiet)
    print(f"{name}: " + ", ".join(f"{described.get(k, {}).get('label', k)} {v['mean']:.2f}"
                                  for k, v in evaluation["scores"].items()))


def cmd_summarize(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from tunebench.data.articles import read_articles
    from tunebench.trained import load_trained, split_target, summarize_articles

    _imports_done(args)
    run_dir, method, name = split_target(args.source)
    wrong = [item for item in args.set if not item.startswith(("eval.", "train.precision=", "train.device="))]
    if wrong:
        raise TunebenchError(f"summarize --set takes decoding settings (eval.*) and train.precision / train.device "
                             f"only, not {wrong[0]}: the others describe how the method was trained")
    load_config(config_file=str(run_dir / "config.yaml"), overrides=args.set)  # bad values: refused before loading
    ids, articles, table = read_articles(args.file, args.column)  # checked before the model loads
    cfg, tuned, tokenizer = load_trained(run_dir, method, name, args.set)
    bar = tqdm(total=len(articles), desc=f"{name}: summarize", unit="article", disable=args.quiet or not table)
    out = summarize_articles(cfg, tuned, tokenizer, articles, progress=bar)
    bar.close()
    if not table:
        text = out.texts[0] + "\n"
    else:
        text = "".join(json.dumps({"id": i, "summary": s}, ensure_ascii=False) + "\n"
                       for i, s in zip(ids, out.texts, strict=True))
    if args.out:
        from tunebench.files import atomic_write_text

        atomic_write_text(Path(args.out), text)
        print(f"tunebench: wrote {len(articles)} summaries to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def cmd_export(args: argparse.Namespace) -> None:
    from tunebench.export import export_model

    _imports_done(args)
    out = export_model(args.target, Path(args.out))
    print(f"tunebench: wrote {out}/ (config, model.safetensors, tokenizer, generation_config.json, README.md); "
          f"load it with AutoModelForCausalLM.from_pretrained('{out}')")


def cmd_config_show(args: argparse.Namespace) -> None:
    from tunebench.settings_doc import render

    print(render(load_config(args.preset or ("demo" if not args.config else None), args.config, args.set)))


def cmd_data_show(args: argparse.Namespace) -> None:
    from tunebench.data.show import describe_data

    cfg = load_config(args.preset or ("demo" if not args.config else None), args.config, args.set)
    print(describe_data(cfg))
    if args.estimate:
        from tunebench.estimate import estimate_run

        print(estimate_run(cfg))
    else:
        print("(add --estimate for the time a comparison takes on this machine, measured from a few steps)")


def cmd_report(args: argparse.Namespace) -> None:
    from tunebench.files import atomic_write_json
    from tunebench.report import write_outputs
    from tunebench.results import merge_results, read_results

    runs = [Path(r) for r in args.runs]
    loaded = [(run.resolve().name, read_results(run)) for run in runs]
    if len(loaded) == 1:
        if args.out or args.allow_different:
            raise TunebenchError("--out and --allow-different go with several runs to merge; one run's report is "
                                 "rebuilt in its own folder")
        out, data = runs[0], loaded[0][1]
    else:
        out = Path(args.out) if args.out else Path("runs") / f"merged-{datetime.now():%Y%m%d-%H%M%S}"
        inside = [run for run in runs if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents]
        if (out / "results.json").exists() or inside:
            where = f"lies inside the run {inside[0]}" if inside else "already holds results"
            raise TunebenchError(f"--out {out} {where}; a merged report goes to a new folder outside every run (it "
                                 "never writes into one)")
        data = merge_results(loaded, args.allow_different)
        atomic_write_json(out / "results.json", data)
    write_outputs(data, out, tensorboard=True)
    print(f"tunebench: wrote {out}/report.md, report.html, plots/, tb/")


def cmd_fetch(_: argparse.Namespace) -> None:
    from tunebench.data.sources import fetch_xsum_sample
    from tunebench.models import EMBEDDED, embedded_model_dir

    print(f"tunebench: XSum sample at {fetch_xsum_sample()}")
    for spec in EMBEDDED:
        print(f"tunebench: {spec} at {embedded_model_dir(spec)}")


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        args.whole_process = argv is None  # the program itself (console script, python -m tunebench)
        args.func(args)
    except TunebenchError as exc:
        print(f"tunebench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in SYSTEM_LIMITS:
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"tunebench: error: {exc.strerror}{where}; {SYSTEM_LIMITS[exc.errno]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        command = "train" if getattr(args, "command", None) == "train" else "compare"
        where = f"`tunebench {command} --resume {RUNNING[-1]}`" if RUNNING else "`tunebench compare --resume <run>`"
        print(f"tunebench: interrupted; finished records are in the run's results.json; continue with {where}",
              file=sys.stderr)
        return 130
    finally:
        if "torch" in sys.modules:  # a torchrun job leaves its process group (no-op otherwise)
            from tunebench import distributed

            distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
