"""The tgap command: each subcommand reaches its function with its options; compile writes a
spec kfp can load."""

from pathlib import Path

import pytest

from tgap import kube
from tgap.cli import build_parser, cmd_compile, cmd_run, format_results_table, main


def test_each_subcommand_parses_its_options_into_its_function():
    parse = build_parser().parse_args
    run = parse(["run", "--config", "c.yaml", "--set", "a=1", "--set", "b=2", "--output", "o"])
    assert run.func is cmd_run and run.overrides == ["a=1", "b=2"] and run.output == Path("o")
    assert parse(["compile", "--config", "c.yaml"]).func is cmd_compile
    submit = parse(["submit", "--config", "c.yaml", "--experiment", "e", "--existing-token", "t"])
    assert submit.func is kube.submit and submit.token == "t" and submit.run_name is None
    schedule = parse(["schedule", "--config", "c.yaml", "--experiment", "e"])
    assert schedule.func is kube.schedule and schedule.cron == kube.DEFAULT_CRON
    runs = parse(["runs", "--limit", "3"])  # no config needed to list runs
    assert runs.func is kube.runs and runs.limit == 3 and runs.experiment is None
    with pytest.raises(SystemExit):
        parse(["submit", "--config", "c.yaml"])  # --experiment is required


def test_compile_writes_a_loadable_spec(tmp_path, capsys):
    from kfp import components

    target = tmp_path / "spec.yaml"
    assert (
        main(["compile", "--config", "pipelines/configs/micro.yaml", "--output", str(target)]) == 0
    )
    assert components.load_component_from_file(str(target)).name == "tgap"


def test_results_table_shows_the_headline_columns(tmp_path):
    results = tmp_path / "results.csv"
    results.write_text(
        "method,size,seed,s2r_accuracy,s2r_auroc,r2s_accuracy,r2s_auroc,fter,extra\n"
        "random,400,0,0.8,0.84,0.7,0.81,1.0370370370,9\n"
    )
    table = format_results_table(results).splitlines()
    assert table[0].split() == [
        "method",
        "size",
        "seed",
        "s2r_auroc",
        "r2s_auroc",
        "fter",
        "s2r_accuracy",
        "r2s_accuracy",
    ]
    assert table[1].split() == ["random", "400", "0", "0.840", "0.810", "1.037", "0.800", "0.700"]
