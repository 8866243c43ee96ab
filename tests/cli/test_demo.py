import pytest

from casebook.cli import CasebookCLI
from casebook.demo import JOBS, format_table


def test_demo_table_shows_agent_baselines_and_missing_values_honestly():
    trading = next(job for job in JOBS if job.name == "trading")
    metrics = {"test/sharpe": 0.5, "test/buy_and_hold_sharpe": 1.25, "test/total_return": -0.1}
    table = format_table(trading, metrics).splitlines()
    assert table[0].split("|")[2].strip() == "Sharpe"
    assert len({len(line) for line in table}) == 1  # a Markdown table padded to read in a terminal
    agent, hold, random = table[2], table[3], table[-1]
    assert agent.startswith("| PPO agent") and "0.500" in agent and "-0.100" in agent
    assert hold.startswith("| buy and hold") and "1.250" in hold
    assert random.startswith("| random policy") and "—" in random  # not measured: not invented
    labels = [line.split("|")[1].strip() for line in table[2:]]
    assert "rule picked on validation" in labels and "supervised (ridge, sign)" in labels


def test_demo_trades_real_data_and_a_planted_market():
    trading, planted = (next(job for job in JOBS if job.name == n) for n in ("trading", "planted"))
    assert not any("--data.source" in a for step in trading.steps for a in step)  # sp500
    assert all("--data.source=synthetic" in step for step in planted.steps)


def test_demo_runs_the_test_of_the_checkpoint_it_trained():
    trading = next(job for job in JOBS if job.name == "trading")
    fit, test = trading.steps
    assert fit[0] == "fit" and test[0] == "test" and "--ckpt_path=best" in test
    assert all(f"--trainer.default_root_dir={trading.root}" in step for step in trading.steps)


@pytest.mark.parametrize("job", [job for job in JOBS if job.steps], ids=lambda job: job.name)
def test_every_demo_command_parses(job, capsys):
    """Each command of `make demo` is one the CLI accepts (parsed, not run: `--print_config`)."""
    for arguments in job.steps:
        with pytest.raises(SystemExit) as done:
            CasebookCLI(args=[*arguments, "--print_config"])
        assert done.value.code in (0, None), arguments
        assert "trainer:" in capsys.readouterr().out


def test_speech_demo_reports_the_models_it_trained():
    speech = next(job for job in JOBS if job.name == "speech")
    teacher_fit, student_fit, student_test = speech.steps
    teacher_root = next(a.split("=", 1)[1] for a in teacher_fit if "default_root_dir" in a)
    assert (
        f"--model.teacher={teacher_root}/hf" in student_fit and "--ckpt_path=best" in student_test
    )
    assert speech.report[0] == "bench.speech" and f"{teacher_root}/hf" in speech.report
