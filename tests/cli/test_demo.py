from casebook.demo import JOBS, format_table


def test_demo_table_shows_agent_baselines_and_missing_values_honestly():
    trading = next(job for job in JOBS if job.name == "trading")
    metrics = {"test/sharpe": 0.5, "test/buy_and_hold_sharpe": 1.25, "test/total_return": -0.1}
    table = format_table(trading, metrics).splitlines()
    assert table[0].split("|")[1].strip() == "Sharpe"
    agent, hold, random = table[2], table[3], table[4]
    assert agent.startswith("PPO agent") and "0.500" in agent and "-0.100" in agent
    assert hold.startswith("buy and hold") and "1.250" in hold
    assert random.startswith("random policy") and "—" in random  # not measured: not invented


def test_demo_runs_the_test_of_the_checkpoint_it_trained():
    trading = next(job for job in JOBS if job.name == "trading")
    fit, test = trading.steps
    assert fit[0] == "fit" and test[0] == "test" and "--ckpt_path=best" in test
    assert all(f"--trainer.default_root_dir={trading.root}" in step for step in trading.steps)
