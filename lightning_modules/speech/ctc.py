"""What the CTC teacher recipe and the distiller share: `CTCSpeechModule`, their base (processor,
evaluation, error analysis, prediction, export), and the functions under it: decoding, error
rates, length checks, the optimizer and the Hugging Face export.

Greedy CTC decoding is the tokenizer's own `batch_decode` (it merges repeats and drops the blank);
WER and CER are torchmetrics'. Written here only what neither library offers: masking padded
frames before decoding, and naming the utterances CTC cannot align.
"""

from __future__ import annotations

import copy
import importlib.util
import itertools
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from matplotlib.figure import Figure
from torch import Tensor, nn
from torchmetrics.functional.text import word_error_rate
from torchmetrics.text import CharErrorRate, WordErrorRate
from transformers import (
    PreTrainedTokenizerBase,
    Wav2Vec2ForCTC,
    Wav2Vec2Processor,
)

from casebook.common.distributed import gather_from_ranks
from casebook.common.figures import log_figure
from casebook.common.tables import log_table
from datamodules.hparams import load_checkpoint
from datamodules.speech.text import build_processor
from lightning_modules.common import Optimization, configure_adamw
from lightning_modules.speech.beam_search import (
    BeamSearchConfig,
    BeamSearchEvaluation,
    beam_decoder,
    language_model_path,
    save_processor_with_lm,
)

LABEL_PAD = -100  # label padding of the speech batches, ignored by CTC
EVAL_STAGES = ("val", "test")


def frame_mask(model: Wav2Vec2ForCTC, num_frames: int, attention_mask: Tensor) -> Tensor:
    """(batch, frames) bool: the output frames that come from real samples, not padding."""
    return model.wav2vec2._get_feature_vector_attention_mask(num_frames, attention_mask).bool()


def greedy_transcripts(
    logits: Tensor, valid_frames: Tensor, tokenizer: PreTrainedTokenizerBase
) -> list[str]:
    """Best path CTC decoding: argmax per frame, padded frames forced to blank, then the CTC
    tokenizer merges repeats and drops blanks. logits: (batch, frames, vocab)."""
    ids = logits.argmax(-1).masked_fill(~valid_frames, tokenizer.pad_token_id)
    return tokenizer.batch_decode(ids.cpu())


def reference_transcripts(labels: Tensor, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The normalized transcripts the labels spell (what the model is asked to write)."""
    ids = labels.masked_fill(labels == LABEL_PAD, tokenizer.pad_token_id)
    return tokenizer.batch_decode(ids.cpu(), group_tokens=False)


def too_short_for_ctc(model: Wav2Vec2ForCTC, attention_mask: Tensor, labels: Tensor) -> Tensor:
    """(batch,) bool: utterances with fewer output frames than CTC needs to emit their labels
    (one per label plus a blank between repeated labels). Their loss is infinite; the models run
    with `ctc_zero_infinity=True`, so it is zeroed, and the caller reports them."""
    frames = model._get_feat_extract_output_lengths(attention_mask.sum(-1))
    valid = labels != LABEL_PAD
    repeats = ((labels[:, 1:] == labels[:, :-1]) & valid[:, 1:]).sum(-1)
    return frames < valid.sum(-1) + repeats


def warn_too_short(module: L.LightningModule, batch: dict, short: Tensor, stage: str) -> None:
    """Count the utterances CTC cannot align, and name them once per stage (never a silent 0)."""
    count = int(short.sum())
    if module._trainer is not None:
        module.log(
            f"{stage}/ctc_too_short",
            float(count),
            reduce_fx="sum",
            sync_dist=True,  # the count over all DDP ranks
            batch_size=len(batch["ids"]),
        )
    if count and stage not in module._warned_too_short:
        module._warned_too_short.add(stage)
        ids = [i for i, s in zip(batch["ids"], short.tolist()) if s]
        rank_zero_warn(
            f"{stage}: {count} utterance(s) have fewer frames than their transcript needs, "
            f"CTC loss zeroed for them: {', '.join(map(str, ids[:5]))}"
        )


def datamodule_processor(module: L.LightningModule) -> Wav2Vec2Processor | None:
    """The attached datamodule's processor: the data decides the vocabulary and normalization."""
    trainer = module._trainer
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    return getattr(datamodule, "processor", None)


def default_processor(source: str | None = None) -> Wav2Vec2Processor:
    """The processor saved with a pretrained model when it has one, else the casebook vocabulary."""
    if source is not None:
        try:
            return Wav2Vec2Processor.from_pretrained(source)
        except (OSError, ValueError, TypeError):
            pass
    return build_processor()


def export_pretrained(
    model: Wav2Vec2ForCTC,
    processor: Wav2Vec2Processor,
    directory: str | Path,
    checkpoint_path: str | Path | None = None,
    prefix: str = "model.",
) -> Path:
    """`save_pretrained` the model (with the weights under `prefix` of a Lightning checkpoint, when
    given) and its processor into `directory`, which then loads with `from_pretrained` and in
    `transformers.pipeline("automatic-speech-recognition", model=directory)`."""
    directory = Path(directory)
    if checkpoint_path:
        state = load_checkpoint(checkpoint_path)["state_dict"]
        model = copy.deepcopy(model)
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory))
    processor.save_pretrained(str(directory))
    return directory


def fit_end_export(
    module: L.LightningModule,
    export_dir: str | None,
    default_name: str,
    export_best: bool,
    beam_search: BeamSearchConfig | None = None,
) -> Path | None:
    """At the end of fit, rank 0 exports the best checkpoint's weights (or the last ones), with
    the beam search's language model as a `Wav2Vec2ProcessorWithLM` when there is one."""
    trainer = module.trainer
    if not trainer.is_global_zero:
        return None
    directory = export_dir or Path(trainer.default_root_dir) / default_name
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    path = module.export(directory, checkpoint_path=best if export_best and best else None)
    print(f"exported {'best' if export_best and best else 'last'} model to {path}")
    if beam_search is not None and beam_search.language_model is not None:
        if not all(importlib.util.find_spec(m) for m in ("pyctcdecode", "kenlm")):
            print("no language model saved with it: pyctcdecode and kenlm are not installed")
            return path
        arpa = language_model_path(module, beam_search)
        decoder = beam_decoder(
            module.processor.tokenizer, arpa, beam_search.alpha, beam_search.beta
        )
        save_processor_with_lm(module.processor, decoder, path)
        print(f"saved the language model {arpa.name} with it (Wav2Vec2ProcessorWithLM)")
    return path


def uniform_ctc_loss(model: Wav2Vec2ForCTC, batch: dict) -> float:
    """The CTC loss `model` would report on `batch` if every frame's output were uniform over the
    vocabulary: what a model that knows nothing scores (`casebook doctor`'s initial-loss
    reference). Same frame lengths, blank, reduction and zero_infinity as Wav2Vec2ForCTC's loss."""
    config = model.config
    labels = batch["labels"]
    valid = labels >= 0
    frames = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1)).long()
    log_probs = torch.full(
        (int(frames.max()), len(labels), config.vocab_size), -math.log(config.vocab_size)
    )  # (frames, batch, vocab), as ctc_loss takes them
    loss = torch.nn.functional.ctc_loss(
        log_probs,
        labels.masked_select(valid).cpu(),
        frames.cpu(),
        valid.sum(-1).cpu(),
        blank=config.pad_token_id,
        reduction=config.ctc_loss_reduction,
        zero_infinity=config.ctc_zero_infinity,
    )
    return float(loss)


class WorstUtterances:
    """Error analysis after `casebook test`: every test utterance's WER with its transcripts, the
    `count` worst written to `reports/test-worst_utterances.{csv,md}` with a figure.

    `update` takes the references and the transcripts of the model (key "", the ranked one) and
    of others (e.g. "teacher_"); under DDP every rank's rows are gathered before ranking.
    """

    def __init__(self, count: int = 20) -> None:
        self.count = count
        self.rows: list[dict] = []

    def reset(self) -> None:
        self.rows = []

    def update(
        self, ids: list[str], references: list[str], transcripts: dict[str, list[str]]
    ) -> None:
        for i, (utterance, reference) in enumerate(zip(ids, references, strict=True)):
            row = {"id": utterance}
            for who, texts in transcripts.items():
                row[f"{who}wer"] = float(word_error_rate(texts[i], reference))
            row["reference"] = reference
            row |= {f"{who}transcript": texts[i] for who, texts in transcripts.items()}
            self.rows.append(row)

    def report(self, module: L.LightningModule, stage: str = "test") -> list[dict]:
        rows = [row for part in gather_from_ranks(self.rows) for row in part]
        worst = sorted(rows, key=lambda row: -row["wer"])[: self.count]
        log_table(module.trainer, f"{stage}/worst_utterances", worst)
        if worst:
            log_figure(
                module.trainer,
                f"{stage}/worst_utterances",
                worst_utterances_figure(rows, worst),
            )
        return worst


def worst_utterances_figure(rows: list[dict], worst: list[dict]) -> Figure:
    """Left: the distribution of per-utterance WER; right: the worst utterances' WER by id."""
    figure = Figure(figsize=(10, 4))
    spread, bars = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    spread.hist([row["wer"] for row in rows], bins=20, color="tab:blue", alpha=0.8)
    spread.set_xlabel("WER per utterance")
    spread.set_ylabel("utterances")
    labels = [row["id"] for row in worst][::-1]
    bars.barh(labels, [row["wer"] for row in worst][::-1], color="tab:red", alpha=0.8)
    bars.set_xlabel(f"WER (worst {len(worst)})")
    bars.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    return figure


class CTCSpeechModule(L.LightningModule):
    """The base of both speech modules: a wav2vec2 CTC recognizer that owns its processor, its
    evaluation (greedy WER and CER at every validation; beam search without and with the language
    model at test), the error analysis, prediction and the Hugging Face export at the end of fit.

    A subclass calls `init_ctc(...)` in its `__init__`, sets the class attributes below, and
    implements `model_step(batch, stage)`, returning a dict with `loss`, `logits` ({who: (batch,
    frames, vocab)}, who "" being the recognizer this module trains and exports) and
    `valid_frames`, plus the loss terms named in `logged_terms`.
    """

    recognizer_name = "model"  # attribute of the trained Wav2Vec2ForCTC (its checkpoint prefix)
    export_name = "hf"  # default export folder under default_root_dir
    decoded: tuple[str, ...] = ("",)  # whose transcripts are evaluated ("teacher_" too ...)
    logged_terms: tuple[str, ...] = ("loss",)  # model_step entries logged per stage

    def init_ctc(
        self, worst_utterances: int, beam_search: BeamSearchConfig, processor_source: str | None
    ) -> None:
        self.error_rates = nn.ModuleDict()
        for stage, who in itertools.product(EVAL_STAGES, self.decoded):
            self.error_rates[f"{stage}_{who}wer"] = WordErrorRate()
            self.error_rates[f"{stage}_{who}cer"] = CharErrorRate()
        self.error_analysis = WorstUtterances(worst_utterances)
        self.beam_evaluation = BeamSearchEvaluation(beam_search, models=self.decoded)
        self._processor_source = processor_source
        self._processor: Wav2Vec2Processor | None = None
        self._warned_too_short: set[str] = set()

    @property
    def recognizer(self) -> Wav2Vec2ForCTC:
        """The model this module trains, evaluates as "" and exports."""
        return getattr(self, self.recognizer_name)

    @property
    def processor(self) -> Wav2Vec2Processor:
        """The datamodule's processor when attached (the data decides vocabulary and
        normalization), else the one saved with the model this one starts from, else the
        casebook vocabulary's."""
        if (attached := datamodule_processor(self)) is not None:
            return attached
        if self._processor is None:
            self._processor = default_processor(self._processor_source)
        return self._processor

    def forward(self, input_values: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The recognizer's CTC logits (batch, frames, vocab)."""
        return self.recognizer(input_values, attention_mask=attention_mask).logits

    def model_step(self, batch: dict, stage: str) -> dict:
        raise NotImplementedError

    def log_terms(self, step: dict, stage: str, batch_size: int) -> None:
        # Evaluation terms are the whole split's under DDP (each rank sees its shard); a training
        # step's stay per rank, as a sync on every step would cost a collective per term.
        for name in self.logged_terms:
            self.log(
                f"{stage}/{name}", step[name], prog_bar=name == "loss", batch_size=batch_size,
                sync_dist=stage != "train",
            )  # fmt: skip

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        step = self.model_step(batch, "train")
        self.log_terms(step, "train", len(batch["ids"]))
        return step["loss"]

    def _evaluate(self, batch: dict, stage: str) -> None:
        step = self.model_step(batch, stage)
        size = len(batch["ids"])
        self.log_terms(step, stage, size)
        tokenizer = self.processor.tokenizer
        references = reference_transcripts(batch["labels"], tokenizer)
        valid = step["valid_frames"]
        transcripts = {}
        for who, logits in step["logits"].items():
            predictions = transcripts[who] = greedy_transcripts(logits, valid, tokenizer)
            for rate in ("wer", "cer"):
                # torchmetrics objects: they sum their counts over DDP ranks themselves
                metric = self.error_rates[f"{stage}_{who}{rate}"]
                metric.update(predictions, references)
                self.log(f"{stage}/{who}{rate}", metric, prog_bar=not who, batch_size=size)
            if stage == "test":
                self.beam_evaluation.update(self, who, logits, valid, references)
        if stage == "test":
            self.error_analysis.update(batch["ids"], references, transcripts)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_start(self) -> None:
        self.error_analysis.reset()
        self.beam_evaluation.start(self, self.processor.tokenizer)

    def on_test_epoch_end(self) -> None:
        self.error_analysis.report(self)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Greedy transcripts, for `casebook predict` with a prediction writer."""
        logits = self(batch["input_values"], batch["attention_mask"])
        valid = frame_mask(self.recognizer, logits.shape[1], batch["attention_mask"])
        transcripts = greedy_transcripts(logits, valid, self.processor.tokenizer)
        return {"ids": batch["ids"], "transcripts": transcripts}

    def trained_parameters(self):
        """What the optimizer steps (the recognizer's parameters)."""
        return self.recognizer.parameters()

    def configure_optimizers(self) -> dict:
        # Frozen parameters (BackboneFinetuning's) are left out; the default linear schedule is
        # the wav2vec2 fine-tuning one (Baevski et al. 2020, the HF CTC examples).
        return configure_adamw(self, self.trained_parameters(), Optimization.of(self.hparams))

    def export(self, directory: str | Path, checkpoint_path: str | Path | None = None) -> Path:
        """Write the recognizer (this module's weights, or a checkpoint's, read with
        weights_only=True) and its processor to `directory` with `save_pretrained`."""
        return export_pretrained(
            self.recognizer,
            self.processor,
            directory,
            checkpoint_path,
            f"{self.recognizer_name}.",
        )

    def on_fit_end(self) -> None:
        hp = self.hparams
        fit_end_export(
            self, hp.export_dir, self.export_name, hp.export_best, self.beam_evaluation.config
        )
