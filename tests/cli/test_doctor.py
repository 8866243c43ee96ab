"""`casebook doctor`: every check passes on a healthy recipe and fails on one broken on purpose;
the real task configs, shrunk, get a table and exit 0."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_classifier import TinyClassDataModule, TinyClassifier
from tiny_speech import TINY_NETWORK
from tiny_task import TinyDataModule, TinyRegressor

from callbacks import GradNormMonitor
from casebook.cli import main
from casebook.doctor import CHECKS, REGISTRY, DoctorOptions, DoctorTrainer
from casebook.doctor.harness import serving, training_on_fixed_batch
from casebook.doctor.protocols import (
    CountsClasses,
    ExpectsInitialLoss,
    FitsFixedBatch,
    HasInspectionBatches,
    HasSplitKeys,
    ReportsInitialStatistics,
)

REPO = Path(__file__).resolve().parents[2]
QUICK = DoctorOptions(steps=40, lr_steps=40, timed_steps=4, data_batches=2)


def doctor(tmp_path, options=QUICK, callbacks=(), data=None, **model) -> dict[str, str]:
    """{check: status} of the tiny classifier with `model` arguments and `data` arguments."""
    torch.manual_seed(0)
    trainer = DoctorTrainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        callbacks=list(callbacks),
    )
    report = trainer.doctor(TinyClassifier(**model), TinyClassDataModule(**(data or {})), options)
    return {row.check: row.status for row in report.rows}


def test_a_healthy_recipe_passes_every_check_and_writes_the_table_as_json(tmp_path):
    statuses = doctor(tmp_path)
    assert list(statuses) == list(CHECKS)
    # throughput only warns, when a step this tiny waits on the DataLoader most of its time
    assert {c: s for c, s in statuses.items() if c != "throughput"} == dict.fromkeys(
        [c for c in CHECKS if c != "throughput"], "pass"
    )
    saved = json.loads((tmp_path / "doctor.json").read_text())
    assert saved["failed"] is False
    assert [row["check"] for row in saved["checks"]] == list(CHECKS)
    initial = saved["checks"][0]
    assert initial["values"]["expected"] == pytest.approx(torch.tensor(4.0).log().item())


@pytest.mark.parametrize(
    ("model", "data", "failing"),
    [
        ({"init_scale": 100.0}, {}, ["initial loss"]),
        ({"lr": 10.0}, {}, ["overfit one batch", "learning rate"]),  # 100x the healthy rate
        ({"hidden_bias": -100.0}, {}, ["activations", "overfit one batch"]),  # every ReLU dead
        ({}, {"nan_rows": 3}, ["data: non-finite", "gradient norms"]),
        ({}, {"leak": True}, ["data: split leakage"]),
        ({}, {"one_class": True}, ["data: class balance"]),
    ],
    ids=["bad_init", "lr_100x", "dead_relus", "nan_in_data", "leak", "one_class"],
)
def test_each_broken_recipe_fails_its_check(tmp_path, model, data, failing):
    statuses = doctor(tmp_path, data=data, **model)
    assert {check: statuses[check] for check in failing} == dict.fromkeys(failing, "fail")
    assert json.loads((tmp_path / "doctor.json").read_text())["failed"] is True


def test_gradient_thresholds_come_from_the_runs_own_monitor(tmp_path):
    # weights 100x: gradients of ~170, under the default explode threshold (1e3), over this one
    monitor = GradNormMonitor(explode_threshold=100.0)
    statuses = doctor(tmp_path, callbacks=[monitor], init_scale=100.0)
    assert statuses["gradient norms"] == "fail"
    assert doctor(tmp_path, init_scale=100.0)["gradient norms"] == "pass"


def test_memory_over_budget_fails_and_waiting_for_data_warns(tmp_path):
    options = DoctorOptions(
        **{**vars(QUICK), "memory_budget_mb": 1.0, "data_wait_warn_fraction": 0.0}
    )
    statuses = doctor(tmp_path, options)
    assert statuses["peak memory"] == "fail"
    assert statuses["throughput"] == "warn"


class ManualTinyClassifier(TinyClassifier):
    """Manual optimization and no fixed_batch(): the doctor cannot fit one batch or range the
    learning rate, and says so."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        loss = super().training_step(batch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def test_a_check_a_task_cannot_support_is_skipped_with_the_reason(tmp_path):
    torch.manual_seed(0)
    trainer = DoctorTrainer(default_root_dir=tmp_path, logger=False)
    report = trainer.doctor(ManualTinyClassifier(), TinyClassDataModule(), QUICK)
    rows = {row.check: row for row in report.rows}
    for check in ("initial loss", "overfit one batch", "learning rate"):
        assert rows[check].status == "skip"
        assert "fixed_batch()" in rows[check].note
    assert rows["gradient norms"].status == "pass"  # measured on the real training_step


def test_the_registry_holds_every_check_by_name_in_table_order():
    names = [
        "initial_loss", "overfit_one_batch", "learning_rate", "gradient_norms", "activations",
        "nonfinite_data", "class_balance", "split_leakage", "throughput", "peak_memory",
    ]  # fmt: skip
    assert list(REGISTRY) == names
    assert [check.title for check in REGISTRY.values()] == list(CHECKS)
    assert all(REGISTRY[name].name == name for name in names)
    help_text = DoctorTrainer.doctor.__doc__  # what `casebook doctor --help` shows for --only
    assert all(name in help_text for name in names)


def test_a_task_without_the_optional_methods_gets_skip_rows_and_the_rest_runs(tmp_path):
    torch.manual_seed(0)
    model, data = (
        TinyRegressor(feature_dim=4),
        TinyDataModule(num_features=4),
    )  # no optional methods
    assert not isinstance(model, ExpectsInitialLoss) and not isinstance(data, HasSplitKeys)
    only = "split_leakage,initial_loss, class_balance,overfit_one_batch"
    report = DoctorTrainer(default_root_dir=tmp_path, logger=False).doctor(model, data, QUICK, only)
    rows = {row.check: row for row in report.rows}
    assert list(rows) == [  # the chosen checks only, in table order
        "initial loss", "overfit one batch", "data: class balance", "data: split leakage",
    ]  # fmt: skip
    skipped = {check: row.note for check, row in rows.items() if row.status == "skip"}
    assert skipped == {
        "initial loss": "TinyRegressor defines no expected_initial_loss()",
        "data: class balance": "TinyDataModule defines no class_counts()",
        "data: split leakage": "TinyDataModule defines no split_keys()",
    }
    assert float(rows["initial loss"].measured) > 0  # the first loss is still shown
    assert rows["overfit one batch"].status == "pass", rows["overfit one batch"]


def test_the_harness_patches_restore_what_they_replaced_even_after_an_error():
    datamodule, model = TinyDataModule(), TinyRegressor()
    own_loader = datamodule.train_dataloader = lambda: (
        "the datamodule's own"
    )  # an instance attribute
    batch = torch.zeros(3)
    with pytest.raises(RuntimeError), serving(datamodule, batch, 2):
        assert [b for b in datamodule.train_dataloader()] == [batch, batch]
        raise RuntimeError
    assert datamodule.train_dataloader is own_loader
    with training_on_fixed_batch(model) as step:
        assert model.training_step == step.training_step
    assert "training_step" not in vars(model)  # the class's method again


def test_the_tasks_satisfy_the_protocols_their_checks_look_for():
    from datamodules.speech import SpeechDataModule
    from datamodules.trading import MarketDataModule
    from datamodules.video import InstructionalVideoDataModule
    from lightning_modules.speech import Wav2Vec2CTCRecipe
    from lightning_modules.trading import PPOTrader
    from lightning_modules.video import ClipPretrainer, StepAligner

    for module in (PPOTrader, Wav2Vec2CTCRecipe, ClipPretrainer, StepAligner):
        assert issubclass(module, ExpectsInitialLoss), module
    assert issubclass(PPOTrader, FitsFixedBatch) and issubclass(PPOTrader, ReportsInitialStatistics)
    assert not issubclass(ClipPretrainer, FitsFixedBatch)
    for datamodule in (MarketDataModule, SpeechDataModule, InstructionalVideoDataModule):
        assert issubclass(datamodule, HasSplitKeys), datamodule
    assert issubclass(MarketDataModule, HasInspectionBatches)
    assert not issubclass(MarketDataModule, CountsClasses)
    for datamodule in (SpeechDataModule, InstructionalVideoDataModule):
        assert issubclass(datamodule, CountsClasses), datamodule


def test_only_runs_the_chosen_checks_and_an_unknown_name_stops_in_one_line(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    command = [
        "doctor", "--config", str(tmp_path / "broken.yaml"), "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}", *SHORT,
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit:
        main([*command, "--only", "learning_rate"])  # reads the rate the single-batch run records
    assert exit.value.code == 1
    report = json.loads((tmp_path / "doctor.json").read_text())
    assert [(row["check"], row["status"]) for row in report["checks"]] == [
        ("learning rate", "fail")
    ]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        main([*command, "--only", "overfit_batch,leakage"])
    assert exit.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("casebook: error: --only: no check named 'overfit_batch', 'leakage';")
    assert "overfit_one_batch" in error and "\n" not in error


def test_the_ctc_reference_is_the_loss_of_uniform_outputs():
    from lightning_modules.speech import Wav2Vec2CTCRecipe

    torch.manual_seed(0)
    recipe = Wav2Vec2CTCRecipe(network=TINY_TEACHER)
    torch.nn.init.zeros_(recipe.model.lm_head.weight)  # every frame uniform over the vocabulary
    torch.nn.init.zeros_(recipe.model.lm_head.bias)
    attention_mask = torch.ones(2, 16000, dtype=torch.long)
    attention_mask[1, 9000:] = 0
    batch = {
        "input_values": torch.randn(2, 16000),
        "attention_mask": attention_mask,
        "labels": torch.tensor([[5, 6, 6, 7, -100], [8, 9, 10, 11, 12]]),
    }
    loss = recipe.model(**batch).loss
    assert recipe.expected_initial_loss(batch) == pytest.approx(loss.item(), rel=1e-5)


# ---------------------------------------------------------------------------- the command line

SHORT = [
    "--checks.steps=30", "--checks.lr_steps=20", "--checks.timed_steps=2",
    "--checks.data_batches=2", "--trainer.max_steps=2",
]  # fmt: skip
TINY_SPEECH = [
    "--data.corpus.num_train_sentences=12", "--data.corpus.num_val_sentences=4",
    "--data.corpus.num_test_sentences=4",
    "--data.batch_size=4", "--model.warmup_steps=3", "--model.lr=0.01",
]  # fmt: skip
TINY_TEACHER = TINY_NETWORK
TINY_VIDEO = [
    "--data.num_train_videos=4", "--data.num_val_videos=2", "--data.num_test_videos=2",
    "--data.min_steps=2", "--data.max_steps=3", "--data.min_step_frames=3",
    "--data.max_step_frames=4", "--data.max_gap_frames=3", "--data.frame_size=16",
    "--data.batch_size=4", "--model.encoder.cnn_width=4", "--model.encoder.text_hidden=16",
    "--model.encoder.text_layers=1", "--model.encoder.text_heads=2", "--model.encoder.embed_dim=16",
]  # fmt: skip
TINY_TRADER = [
    "--data.source=synthetic", "--data.synthetic.days=3000", "--data.splits.train_end=2006-12-31",
    "--data.splits.valid_end=2008-06-30", "--data.num_envs=16", "--data.episode_length=16",
    "--data.iterations_per_epoch=1", "--model.ppo.rollout_steps=4", "--trainer.max_epochs=1",
]  # fmt: skip
BROKEN = """
model: {class_path: tiny_classifier.TinyClassifier, init_args: {lr: 10.0}}
data: {class_path: tiny_classifier.TinyClassDataModule}
"""

# `casebook doctor` for each {name: arguments} read from stdin, through casebook's entry point,
# in this one interpreter (each new one spends ~15 s importing torch, Lightning and
# transformers); then the exit codes.
DRIVER = """
import json, sys
from casebook.cli import main
codes = {}
for name, arguments in json.load(sys.stdin).items():
    try:
        main(arguments)
        codes[name] = 0
    except SystemExit as exit:
        codes[name] = exit.code
print("exit codes:", json.dumps(codes))
"""


@pytest.fixture
def tiny_teacher(cli_env, tmp_path) -> Path:
    """The tiny speech corpus in the CLI's cache, and a tiny saved teacher for the student."""
    from datamodules.speech.tts_corpus import TtsCorpusConfig, generate_tts_corpus
    from lightning_modules.speech import Wav2Vec2CTCRecipe

    corpus = {"num_train_sentences": 12, "num_val_sentences": 4, "num_test_sentences": 4}
    generate_tts_corpus(TtsCorpusConfig(**corpus), cli_env["CASEBOOK_CACHE"])
    torch.manual_seed(0)
    teacher = Wav2Vec2CTCRecipe(network=TINY_TEACHER)
    # a wide CTC head: the student starts well above CTC's all-blank plateau
    torch.nn.init.normal_(teacher.model.lm_head.weight, std=1.0)
    return teacher.export(tmp_path / "teacher")


def test_every_task_config_gets_a_table_and_exits_0_and_a_broken_one_exits_1(
    cli_env, tmp_path, tiny_teacher
):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    runs = {
        "ppo_trader": TINY_TRADER,
        "speech_teacher": [
            *TINY_SPEECH,
            *(f"--model.network.{k}={v}" for k, v in TINY_TEACHER.items()),
        ],
        "speech_student": [*TINY_SPEECH, f"--model.teacher={tiny_teacher}"],
        "clip_pretrainer": TINY_VIDEO,
        "step_aligner": [*TINY_VIDEO, "--model.pretrained=null", "--model.freeze_encoders=false"],
    }
    commands = {
        name: [
            "doctor", "--config", str(REPO / "configs" / f"{name}.yaml"),
            f"--trainer.default_root_dir={tmp_path / name}", *SHORT, *overrides,
        ]
        for name, overrides in runs.items()
    }  # fmt: skip
    commands["broken"] = [
        "doctor", "--config", str(tmp_path / "broken.yaml"),
        f"--trainer.default_root_dir={tmp_path / 'broken'}", *SHORT,
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", DRIVER],
        input=json.dumps(commands),
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "exit codes:" in result.stdout, result.stderr[-3000:]
    codes = json.loads(result.stdout.split("exit codes:")[-1])
    assert codes == {**dict.fromkeys(runs, 0), "broken": 1}, result.stdout[-8000:]
    assert "Traceback" not in result.stderr
    for name in commands:
        report = json.loads((tmp_path / name / "doctor.json").read_text())
        statuses = {row["check"].split(" (")[0]: row["status"] for row in report["checks"]}
        assert set(statuses) == set(CHECKS), name
        assert report["failed"] == (name == "broken"), name
        assert statuses["data: split leakage"] == "pass", name  # each task's split_keys() ran
        assert f"casebook doctor: {report['model']} on {report['datamodule']}" in result.stdout
