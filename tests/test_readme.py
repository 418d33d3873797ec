"""The README stays true: CI runs its test command, its Python names exist, its commands parse."""

import re
import shlex
from pathlib import Path

import tp_spikformer as tp
from tp_spikformer.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands():
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == 2, "the README opens with exactly two commands"
    return lines


def test_ci_runs_the_readme_test_command():
    _, test_command = readme_commands()
    assert test_command.endswith("python -m pytest")
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_main_job_command_runs_the_demo():
    main_job, _ = readme_commands()
    assert main_job.endswith("tp-spikformer demo") and 'pip install -e ".[all]"' in main_job


def test_python_names_in_the_readme_exist():
    for name in set(re.findall(r"\btp\.([a-z_]+)\(", README)):
        assert hasattr(tp, name), f"README uses tp.{name}, which the package does not export"


def test_cli_examples_parse():
    parser = build_parser()
    for block in README.split("```bash")[2:]:
        text = block.split("```", 1)[0].replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("tp-spikformer "):
                argv = shlex.split(line)[1:]
                if argv[0] in ("train", "finetune"):
                    from tp_spikformer.train import parse_args

                    assert parse_args(argv[1:], finetune=argv[0] == "finetune").model
                else:
                    assert parser.parse_args(argv).command
