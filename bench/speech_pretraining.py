"""Does wav2vec 2.0 self-supervised pre-training help the CTC speech teacher at equal total CPU
time, with 10% and with 100% of the labels?

    .venv/bin/python -m bench.speech_pretraining                 # B=10, P=4 minutes: ~45 minutes
    .venv/bin/python -m bench.speech_pretraining --quick         # tiny corpus and network, ~1 min
    .venv/bin/python -m bench.speech_pretraining --budget-minutes 20 --pretrain-minutes 8
    .venv/bin/python -m bench.speech_pretraining --reuse -- --model.network.feature_init=filterbank

Every run is what a user types, in this process (CasebookCLI, the same code as `casebook`):

    casebook fit  --config configs/speech_pretrain.yaml --trainer.max_time P      # once, all audio
    casebook fit  --config configs/speech_teacher.yaml  --trainer.max_time B      # "scratch"
    casebook fit  --config configs/speech_teacher.yaml  --trainer.max_time B-P \\
        --model.pretrained <pre-training>/pretrained                             # "pretrained"
    casebook test --config configs/speech_teacher.yaml --ckpt_path best          # each teacher

Equal total CPU time: each arm gets B minutes (`--budget-minutes`, default 10). The "pretrained"
arm's total counts its pre-training: P minutes of self-supervised training (`--pretrain-minutes`,
default 4) plus B-P minutes of CTC fine-tuning; "scratch" trains the teacher for all B minutes.
The one pre-training run serves both label shares, and is charged in full to each of them. The
budgets are Lightning's `max_time` (wall clock from the start of training, validations
included; every schedule anneals over its own budget), so each fit's measured wall and process
CPU minutes (all threads) are reported next to them: the arms run one after another, and another
job on the same cores takes a different share from each.

Data: the tts corpus of configs/speech_teacher.yaml (6,000 sentences, each read by 2 training
voices; 150 validation and 150 test sentences in voices never heard in training). The
pre-training reads all of its training audio without transcripts (`data.labeled: false`). The
teachers read the same corpus through manifests: the first 10% (or 100%) of its training
sentences in the corpus' own shuffled order, both readings of each, and the corpus' own
validation and test manifests. `--data.corpus.num_train_sentences=600` would not do: the corpus
plans every split from its sizes, so a smaller corpus has other validation and test utterances
(none shared), and most of its test sentences are training audio of the pre-training corpus.

Rows: label share and utterances; start (scratch, or the self-supervised export); fine-tune and
total budgets; the fine-tuning's steps; measured wall and CPU minutes of the fit(s); test WER
and CER (greedy decoding of the best validation checkpoint; the beam-search and LM figures are in
the results JSON). One seed: a difference in WER of a few hundredths is within seed noise.
`--freeze-epochs N` adds Lightning's `BackboneFinetuning` to the pretrained arm (the CTC head
alone for N epochs, where an epoch is one pass over that arm's labels: with 100% of them, one
epoch is about the whole fine-tuning budget). `--reuse` skips a fit whose folder already holds a
checkpoint; the folders are named by the budgets but not by the extra options. Extra casebook
options go after `--` and apply to every run, the pre-training included.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.common import casebook_cli, cpu_line, load_average, machine, write_results
from casebook.common.tables import markdown_table

ROOT = Path("runs/bench/speech_pretraining")
TEACHER, PRETRAIN = "configs/speech_teacher.yaml", "configs/speech_pretrain.yaml"
PRETRAIN_METRICS = ("loss", "masked_accuracy", "codevector_perplexity")  # val/<name>, last logged

# --quick: the shapes of tests/lightning_modules/speech/test_pretrain.py and a few steps per fit
# (equal steps, not equal CPU time: a smoke run of the pipeline, not a measurement).
QUICK_CORPUS = {"num_train_sentences": 12, "num_val_sentences": 4, "num_test_sentences": 4}
QUICK_NETWORK = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16],
    "num_conv_pos_embeddings": 8,
    "num_conv_pos_embedding_groups": 4,
}
QUICK_QUANTIZER = {  # the pre-trainer's own options
    "num_codevectors_per_group": 16,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
    "num_negatives": 10,
}
QUICK_TOTAL, QUICK_PRETRAIN = 6, 3  # steps


@dataclass(frozen=True)
class Budget:
    """A fit's limit: minutes of Lightning's `max_time` or, with --quick, steps."""

    amount: float
    unit: str  # "min" or "steps"

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"

    def __sub__(self, other: Budget) -> Budget:
        return Budget(self.amount - other.amount, self.unit)

    @property
    def tag(self) -> str:
        """For folder names: `6min`, `3steps`."""
        return f"{self.amount:g}{self.unit}"

    def options(self) -> list[str]:
        if self.unit == "steps":  # a validation at the last step, so `--ckpt_path best` exists
            steps = int(self.amount)
            return [
                "--trainer.max_time=null",
                f"--trainer.max_steps={steps}",
                f"--trainer.val_check_interval={steps}",
            ]
        seconds = round(self.amount * 60)
        hours, minutes = divmod(seconds // 60, 60)
        return [f"--trainer.max_time=00:{hours:02d}:{minutes:02d}:{seconds % 60:02d}"]


def fit(root: Path, options: list[str], reuse: bool) -> dict:
    """`casebook fit` into `root` (unless `reuse` and its checkpoint exists): the steps it took,
    its wall and process CPU minutes (all threads; NaN when reused), the load around it."""
    from datamodules.hparams import load_checkpoint

    last = root / "checkpoints" / "last.ckpt"
    taken = {"wall_minutes": float("nan"), "cpu_minutes": float("nan")}
    load_before = load_average()
    if not (reuse and last.is_file()):
        wall, cpu = time.perf_counter(), time.process_time()
        casebook_cli(["fit", *options, f"--trainer.default_root_dir={root}"])
        taken = {
            "wall_minutes": (time.perf_counter() - wall) / 60,
            "cpu_minutes": (time.process_time() - cpu) / 60,
        }
    steps = int(load_checkpoint(last)["global_step"])
    return {"steps": steps, **taken, "load_before": load_before, "load_after": load_average()}


def final_validation(root: Path) -> dict[str, float]:
    """The last logged `val/<name>` of each of PRETRAIN_METRICS in the newest CSV log having them."""
    logs = sorted(root.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    for path in reversed(logs):
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        found = {
            f"val/{name}": float(row[f"val/{name}"])
            for row in rows
            for name in PRETRAIN_METRICS
            if row.get(f"val/{name}")
        }
        if found:
            return found
    return {}


def teacher_corpus(corpus_options: dict):
    """The tts corpus of the teacher config (and of the pre-training, checked), synthesized into
    the cache (`$CASEBOOK_CACHE`) unless it is there."""
    from datamodules.speech.datamodule import SynthesizedCorpus
    from datamodules.speech.tts_corpus import generate_tts_corpus

    corpus = {
        config: yaml.safe_load(Path(config).read_text())["data"]["init_args"]["corpus"]
        for config in (TEACHER, PRETRAIN)
    }
    if corpus[TEACHER] != corpus[PRETRAIN]:
        raise SystemExit(f"{PRETRAIN} pre-trains on another corpus than {TEACHER}: {corpus}")
    options = SynthesizedCorpus(**corpus[TEACHER] | corpus_options)
    return generate_tts_corpus(options.tts_config(sample_rate=16000))


def label_manifest(corpus, share: float, directory: Path) -> tuple[Path, int, int]:
    """The corpus' training manifest cut to its first `share` of sentences (every reading of
    each; the corpus drew their order at random), audio paths made absolute: (path, sentences,
    utterances)."""
    lines = corpus.manifests["train"].read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    sentences = list(dict.fromkeys(row["sentence_id"] for row in rows))
    kept = set(sentences[: max(1, round(share * len(sentences)))])
    chosen = [
        row | {"audio_filepath": str((corpus.root / row["audio_filepath"]).resolve())}
        for row in rows
        if row["sentence_id"] in kept
    ]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"train-{share:.0%}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in chosen))
    return path.resolve(), len(kept), len(chosen)


def freeze_config(root: Path, epochs: int) -> Path:
    """A config adding Lightning's BackboneFinetuning: the CTC head alone for `epochs` epochs."""
    callback = {
        "class_path": "lightning.pytorch.callbacks.BackboneFinetuning",
        "init_args": {"unfreeze_backbone_at_epoch": epochs},
    }
    path = root / f"freeze-{epochs}.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"trainer": {"callbacks+": [callback]}}))
    return path


def teach(
    run_root: Path, teacher: list[str], fit_only: list[str], budget: Budget, reuse: bool
) -> dict:
    """fit + `test --ckpt_path best` of one teacher: its fit's figures and its test metrics."""
    fitted = fit(run_root, [*teacher, *fit_only, *budget.options()], reuse)
    casebook_cli(["test", *teacher, f"--trainer.default_root_dir={run_root}", "--ckpt_path=best"])
    return fitted | json.loads((run_root / "test_metrics.json").read_text())


def table(results: list[dict], pretraining: dict, pretrain: Budget, total: Budget) -> list[dict]:
    rows = []
    for r in results:
        charged = pretraining if r["start"] == "pretrained" else {}  # its pre-training, in full
        start = f"self-supervised, {pretrain}" if charged else "scratch"
        if charged and pretrain.unit != "steps":
            start += f" ({pretraining['steps']:,} steps)"
        rows.append(
            {
                "labels": f"{r['share']:.0%} ({r['sentences']:,} sentences)",
                "utterances": f"{r['utterances']:,}",
                "start": start,
                "fine-tune": r["budget"],
                "total": str(total),
                "fine-tune steps": f"{r['steps']:,}",
                "wall min": r["wall_minutes"] + charged.get("wall_minutes", 0.0),
                "CPU min": r["cpu_minutes"] + charged.get("cpu_minutes", 0.0),
                "test WER": r["test/wer"],
                "test CER": r["test/cer"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-minutes", type=float, default=10.0, help="B: each arm's total")
    parser.add_argument("--pretrain-minutes", type=float, default=4.0, help="P: pre-training")
    parser.add_argument(
        "--fractions", nargs="+", type=float, default=[0.1, 1.0],
        help="shares of the training sentences whose transcripts the teachers read",
    )  # fmt: skip
    parser.add_argument(
        "--freeze-epochs", type=int, default=0,
        help="pretrained arm: the CTC head alone for this many epochs (BackboneFinetuning); 0: off",
    )  # fmt: skip
    parser.add_argument("--reuse", action="store_true", help="skip fits whose checkpoint exists")
    parser.add_argument("--quick", action="store_true", help="tiny corpus and network, few steps")
    parser.add_argument("extra", nargs="*", help="casebook options for every run, after --")
    args = parser.parse_args(argv)
    if not 0 < args.pretrain_minutes < args.budget_minutes:
        parser.error("--pretrain-minutes must be above 0 and below --budget-minutes")
    root, unit = (ROOT / "quick", "steps") if args.quick else (ROOT, "min")
    total = Budget(QUICK_TOTAL if args.quick else args.budget_minutes, unit)
    pretrain = Budget(QUICK_PRETRAIN if args.quick else args.pretrain_minutes, unit)
    common = ["--config=configs/presets/csv.yaml", "--trainer.enable_progress_bar=false"]
    pretrainer_only = []
    if args.quick:
        common += [f"--data.corpus.{k}={v}" for k, v in QUICK_CORPUS.items()]
        common += [f"--model.network.{k}={v}" for k, v in QUICK_NETWORK.items()]
        common += ["--data.batch_size=4", "--trainer.log_every_n_steps=1"]
        pretrainer_only = [f"--model.{k}={v}" for k, v in QUICK_QUANTIZER.items()]
    common += args.extra
    info = machine()
    print(f"{info['date']}, {cpu_line()}, load {info['load_average']}", flush=True)
    corpus = teacher_corpus(QUICK_CORPUS if args.quick else {})

    # once: every training utterance's audio, no transcripts
    pretrain_root = root / f"pretrain-{pretrain.tag}"
    options = [f"--config={PRETRAIN}", *common, *pretrainer_only, *pretrain.options()]
    pretraining = fit(pretrain_root, options, args.reuse) | final_validation(pretrain_root)
    print(f"pre-training, {pretrain}: {pretraining}", flush=True)

    exported = (pretrain_root / "pretrained").resolve()
    freeze = [f"--config={freeze_config(root, args.freeze_epochs)}"] if args.freeze_epochs else []
    results = []
    for share in args.fractions:
        manifest, sentences, utterances = label_manifest(corpus, share, root / "manifests")
        data = [
            "--data.source=manifest",
            f"--data.train_manifest={manifest}",
            f"--data.val_manifest={corpus.manifests['val'].resolve()}",
            f"--data.test_manifest={corpus.manifests['test'].resolve()}",
        ]
        arms = {  # start: (budget, options of fit and test, options of fit alone, folder name)
            "scratch": (total, [], [], f"scratch-{total.tag}"),
            "pretrained": (
                total - pretrain,
                [f"--model.pretrained={exported}"],
                freeze,
                f"pretrained-{pretrain.tag}+{(total - pretrain).tag}"
                + (f"-freeze{args.freeze_epochs}" if freeze else ""),
            ),
        }
        for start, (budget, start_options, fit_only, name) in arms.items():
            run_root = root / f"labels-{share:.0%}" / name
            teacher = [f"--config={TEACHER}", *common, *data, *start_options]
            result = teach(run_root, teacher, fit_only, budget, args.reuse)
            results.append(
                {"share": share, "sentences": sentences, "utterances": utterances,
                 "start": start, "budget": str(budget), "root": str(run_root), **result}
            )  # fmt: skip
            print(
                f"{share:.0%} labels, {start}: {result['steps']:,} steps, "
                f"test WER {result['test/wer']:.3f}, CER {result['test/cer']:.3f}",
                flush=True,
            )

    finished = machine()
    rows = table(results, pretraining, pretrain, total)
    print(
        f"\nThe speech teacher from scratch and from wav2vec 2.0 pre-training at an equal total "
        f"budget of {total} per arm, pre-training included; test split, greedy decoding; "
        f"{finished['date']}, {cpu_line()}, load {finished['load_average']}"
    )
    print(markdown_table(rows))
    if "val/masked_accuracy" in pretraining:
        print(
            f"pre-training's last validation: masked_accuracy {pretraining['val/masked_accuracy']:.3f}, "
            f"codevector_perplexity {pretraining['val/codevector_perplexity']:.1f}, "
            f"loss {pretraining['val/loss']:.3f}"
        )
    payload = {"started": info, "finished": finished, "args": vars(args),
               "pretraining": pretraining, "rows": rows, "runs": results}  # fmt: skip
    print(f"saved {write_results('speech_pretraining' + '_quick' * args.quick, payload)}")


if __name__ == "__main__":
    main()
