"""A new user runs a README command before its prerequisite (issue 15, item 5): the checkpoint
`--ckpt_path best` reads, the pre-trained encoders, the teacher, the student to fine-tune, a data
file, the checkpoints of an ensemble. Every such command, in a fresh folder holding only
`configs/`, prints one line naming what is missing, exits 2, and leaves no run or W&B folder."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"

# the README's commands as test_readme_commands.py extracts them (a sibling module, loaded by path:
# pytest runs in importlib mode)
_spec = importlib.util.spec_from_file_location(
    "test_readme_commands", Path(__file__).with_name("test_readme_commands.py")
)
_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_readme)
COMMANDS = _readme.COMMANDS

# Options whose value is a file or folder another command makes or the user brings.
PREREQUISITE_OPTIONS = (
    "model.teacher",
    "model.student_init",
    "model.pretrained",
    "model.backtest.ensemble_checkpoints",
    "data.path",
    "data.context_path",
    "data.annotations",
    "data.features_dir",
    "data.video_dir",
)


def options(args: list[str]) -> list[tuple[str, str]]:
    """`--name value` and `--name=value` pairs, in order."""
    pairs = []
    for index, arg in enumerate(args):
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            pairs.append((name, value if equals else args[index + 1]))
    return pairs


def option_in_config(config: dict, name: str) -> tuple[bool, object]:
    """(found, value) of `group.a.b` in a config file: `group: {init_args: {a: {b: value}}}`."""
    group, *keys = name.split(".")
    node = (config.get(group) or {}).get("init_args") or {}
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def missing_prerequisites(command: str) -> list[str]:
    """What the command needs that a fresh folder lacks, as its error line would name it: the
    PREREQUISITE_OPTIONS its config files and then its arguments resolve to (null: none), and
    the `last.ckpt` that `--ckpt_path best` reads."""
    values: dict[str, object] = {}
    needs = []
    for name, value in options(shlex.split(command)[1:]):
        if name == "config":
            config = yaml.safe_load((REPO / value).read_text()) or {}
            for option in PREREQUISITE_OPTIONS:
                found, in_config = option_in_config(config, option)
                if found:
                    values[option] = in_config
        elif name in PREREQUISITE_OPTIONS:
            values[name] = yaml.safe_load(value)
        elif name == "ckpt_path" and value == "best":
            needs.append("last.ckpt")
    for value in values.values():
        needs += [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]
    return needs


CASES = [(c, missing_prerequisites(c)) for c in COMMANDS if missing_prerequisites(c)]


def test_the_readme_shows_commands_with_a_prerequisite_for_every_task():
    configs = {m for c, _ in CASES for m in re.findall(r"configs/(\w+)\.yaml", c)}
    assert {"ppo_trader", "speech_student", "step_aligner", "clip_pretrainer"} <= configs, configs
    assert any("last.ckpt" in names for _, names in CASES)


def test_a_readme_command_missing_its_prerequisite_says_so_in_one_line_and_exits_2(tmp_path):
    """All cases in one test: one import, then a forked process per command (2 at a time)."""
    home, cache = tmp_path / "home", tmp_path / "hf-cache"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        HOME=str(home), XDG_CACHE_HOME=str(cache), HF_HOME=str(cache / "huggingface"),
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")]),
    )  # fmt: skip
    jobs = []
    for index, (command, _) in enumerate(CASES):
        folder = tmp_path / f"user{index}"
        shutil.copytree(REPO / "configs", folder / "configs")
        jobs.append(
            {
                "args": shlex.split(command)[1:],
                "cwd": str(folder),
                "output": str(tmp_path / f"output{index}.txt"),
                "env": {"CASEBOOK_CACHE": str(tmp_path / f"cache{index}")},
            }
        )
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run(
        [sys.executable, "-m", "forked_commands", str(tmp_path / "jobs.json")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "jobs.json.imports").read_text() == "", "importing casebook printed"
    codes = json.loads(result.stdout.strip().splitlines()[-1])

    failures = []
    for (command, names), job, code in zip(CASES, jobs, codes, strict=True):
        output = Path(job["output"]).read_text()
        lines = [line for line in output.splitlines() if line.strip()]
        left = sorted(p.name for p in Path(job["cwd"]).iterdir() if p.name != "configs")
        one_line = len(lines) == 1 and lines[0].startswith("casebook: error: ")
        named = one_line and any(name in lines[0] for name in names)
        if code != 2 or not named or left or "Traceback" in output:
            failures.append(f"{command}\n  exit {code}, left {left}, output:\n{output[-1500:]}")
    assert not failures, "\n".join(failures)
    assert not list(tmp_path.rglob("wandb")), "a W&B folder was made for a run that never started"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("casebook fit --config configs/step_aligner.yaml", ["runs/clip_pretrainer/encoders"]),
        ("casebook fit --config configs/step_aligner.yaml --model.pretrained null", []),
        (
            "casebook test --config configs/speech_student_qat.yaml --ckpt_path best",
            ["last.ckpt", "runs/speech_teacher/hf", "runs/speech_student/student_hf"],
        ),
        (
            "casebook test --config configs/ppo_trader.yaml "
            "--model.backtest.ensemble_checkpoints='[a.ckpt, b.ckpt]'",
            ["a.ckpt", "b.ckpt"],
        ),
        ("casebook fit --config configs/ppo_trader.yaml --data.path=m.csv", ["m.csv"]),
    ],
)
def test_prerequisites_are_read_from_the_configs_and_the_command_line(command, expected):
    assert missing_prerequisites(command) == expected


def test_ckpt_path_best_names_an_unreadable_last_ckpt_in_one_line(tmp_path, capsys):
    """In-process: the run stops in check_prerequisites, before any Trainer exists."""
    from casebook.cli import main

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "last.ckpt").write_bytes(b"half a checkpoint")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {class_path: tiny_task.TinyRegressor}\n"
        "data: {class_path: tiny_task.TinyDataModule, init_args: {num_features: 3}}\n"
        f"trainer: {{default_root_dir: {tmp_path / 'run'}, logger: false}}\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["test", "--config", str(config), "--ckpt_path", "best"])
    assert exited.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert lines[0].startswith(
        f"casebook: error: --ckpt_path best {last}: not a readable checkpoint"
    )
