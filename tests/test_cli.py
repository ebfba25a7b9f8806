"""The tgap command: every subcommand has --help; compile writes a spec kfp can load."""

import subprocess
import sys

import pytest

from tgap.cli import format_results_table, main


@pytest.mark.parametrize("command", ["run", "compile", "submit", "schedule", "runs"])
def test_every_subcommand_has_help(command):
    out = subprocess.run(
        [sys.executable, "-m", "tgap.cli", command, "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert f"usage: tgap {command}" in out.stdout


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
