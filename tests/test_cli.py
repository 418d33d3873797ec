"""The command line: each command on a tiny model, results files, and clear errors with exit code 2."""

import json
import os

import pytest
from PIL import Image

from tp_spikformer.cli import main

FAST = [
    "--model",
    "sdt_tiny",
    "--dataset",
    "synthetic:32",
    "--batch-size",
    "16",
    "--repeats",
    "1",
    "--speed-batch-size",
    "4",
    "--energy-batches",
    "1",
    "--no-progress",
]


def test_models_lists_registry(capsys):
    assert main(["models", "qkformer_10_*"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) >= 3 and all(line.startswith("qkformer_10_") for line in out)


@pytest.mark.slow
def test_eval_writes_results_and_config(tmp_path, capsys):
    assert main(["eval", *FAST, "--keep", "0.5", "--out", str(tmp_path)]) == 0
    assert "| dense |" in capsys.readouterr().out
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in results["rows"]] == ["dense", "official@fraction:0.5"]
    assert results["rows"][1]["kept_fraction"] == pytest.approx(0.5)
    assert results["rows"][1]["macs_per_image"] < results["rows"][0]["macs_per_image"]
    assert (tmp_path / "results.csv").read_text().startswith("variant,scorer,keep,top1")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["name"] == "sdt_tiny" and config["arguments"]["keep"] == "0.5"


@pytest.mark.slow
def test_sweep_writes_table_and_plots(tmp_path):
    assert (
        main(
            [
                "sweep",
                *FAST,
                "--keeps",
                "1.0",
                "0.5",
                "--scorers",
                "official",
                "random",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == [
        "dense",
        "official@fraction:1",
        "official@fraction:0.5",
        "random@fraction:1",
        "random@fraction:0.5",
    ]
    for name in ("accuracy_vs_energy.png", "accuracy_vs_throughput.png"):
        assert_plot(tmp_path / name)


def assert_plot(path, min_aspect=1.0):
    """A real picture: a PNG that decodes, wider than tall, with drawn content (not one flat colour)."""
    import numpy as np

    with Image.open(path) as img:
        assert img.format == "PNG"
        pixels = np.asarray(img.convert("L"), dtype=np.float32)
    assert pixels.shape[1] >= min_aspect * pixels.shape[0]
    assert pixels.std() > 5 and len(np.unique(pixels)) > 20


@pytest.mark.slow
def test_bench_interleaves_variants(tmp_path):
    assert (
        main(
            [
                "bench",
                "--model",
                "sdt_tiny",
                "--keeps",
                "0.5",
                "--batch-sizes",
                "1",
                "2",
                "--repeats",
                "2",
                "--warmup",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    assert {r["variant"] for r in data["results"]} == {"dense", "official@fraction:0.5"}
    assert "cpu_load_others" in data["environment"]
    assert (tmp_path / "bench.csv").exists()


@pytest.mark.slow
def test_visualize_writes_pngs(tmp_path):
    assert (
        main(
            [
                "visualize",
                "--model",
                "sdt_tiny",
                "--dataset",
                "synthetic:8",
                "--keep",
                "0.5",
                "--indices",
                "0",
                "3",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    for i in (0, 3):
        assert_plot(
            tmp_path / f"sample{i}_tokens.png", min_aspect=2.0
        )  # input + 2 blocks + depth map in a row


def test_scorers_command_lists_every_scorer_with_a_line(capsys):
    from tp_spikformer.pruning import scorer_names

    assert main(["scorers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == scorer_names()
    assert all(len(line.split(maxsplit=1)[1]) > 20 for line in lines)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--model", "nope", "--dataset", "synthetic:8"], "unknown model 'nope'"),
        (
            ["eval", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--keep", "1.5"],
            "invalid fraction value 1.5",
        ),
        (["eval", "--model", "sdt_tiny", "--dataset", "cifar10"], "--data-root"),
        (["eval", "--model", "sdt_tiny", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["eval", "--model", "sdt_tiny", "--set", "heads=3"], "unknown override(s) ['heads']"),
        (["eval", "--model", "sdt_tiny", "--set", "T"], "--set expects KEY=VALUE"),
        (["eval", "--model", "sdt_tiny", "--checkpoint", "/no/such/file.pth"], "checkpoint file not found"),
        (
            ["eval", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--device", "cuda:7"],
            "CUDA is not available",
        ),
        (
            [
                "eval",
                "--model",
                "qkformer_tiny",
                "--dataset",
                "synthetic:8",
                "--keep",
                "0.5",
                "--mode",
                "drop",
            ],
            "mode='stop'",
        ),
        (["visualize", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--indices", "9"], "out of range"),
        (["models", "zzz*"], "no model matches"),
        # options the run would not read are refused, not dropped
        (["eval", "--model", "sdt_tiny", "--use-ema"], "--use-ema does nothing without --checkpoint"),
        (["bench", "--model", "sdt_tiny", "--trust-checkpoint"], "--trust-checkpoint does nothing"),
        (["visualize", "--model", "sdt_tiny", "--use-ema"], "without --checkpoint"),
        (
            ["eval", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--frames", "2"],
            "cifar10dvs and dvs128",
        ),
        (["eval", "--model", "sdt_tiny", "--split", "train"], "--split test"),
        (["eval", "--model", "sdt_tiny", "--data-root", "x"], "reads no folder"),
        (["sweep", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--data-root", "x"], "reads no folder"),
        (["eval", "--model", "sdt_tiny", "--dataset", "npz:x.npz", "--split", "train"], "no splits"),
        (["eval", "--model", "sdt_tiny", "--energy-batches", "0", "--e-mac", "3"], "--energy-batches 0"),
        (["sweep", "--model", "sdt_tiny", "--no-speed", "--repeats", "2"], "with --no-speed"),
        (["visualize", "--model", "sdt_tiny", "--image", "a.png", "--indices", "1"], "with --image"),
        (
            ["visualize", "--model", "sdt_tiny", "--image", "a.png", "--dataset", "x"],
            "--dataset does nothing",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys, tmp_path):
    if "--out" not in argv and argv[0] != "models":
        argv = [*argv, "--out", str(tmp_path)]
    if message == "CUDA is not available":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "nope"],
        ["sweep", "--model", "nope"],
        ["bench", "--model", "nope"],
        ["calibrate", "--model", "nope", "--budget", "0.5"],
        ["visualize", "--model", "nope"],
        ["demo"],
    ],
)
def test_threads_0_divides_the_cores_among_local_processes(argv, monkeypatch, tmp_path):
    import torch

    import tp_spikformer.demo
    import tp_spikformer.runtime

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setattr(tp_spikformer.runtime, "available_cpus", lambda: 3)
    monkeypatch.setattr(tp_spikformer.demo, "run_demo", lambda **kw: 0)
    main([*argv, "--threads", "0", "--out", str(tmp_path)])
    assert calls == [3]


def test_argparse_errors_exit_2(capsys):
    for argv, message in (
        (["eval"], "--model"),
        (["eval", "--model", "sdt_tiny", "--mode", "delete"], "delete"),
        (["eval", "--model", "sdt_tiny", "--scorer", "best"], "invalid choice: 'best'"),
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_one_vocabulary_with_hidden_old_spellings():
    from tp_spikformer.cli import build_parser

    parser = build_parser()
    new = parser.parse_args(
        [
            "train",
            "--model",
            "sdt_tiny",
            "--dataset",
            "shipped",
            "--keep",
            "0.5",
            "--scorer",
            "paper",
            "--out",
            "x",
        ]
    )
    old = parser.parse_args(
        [
            "train",
            "--model",
            "sdt_tiny",
            "--data",
            "shipped",
            "--tp-keep",
            "0.5",
            "--tp-scorer",
            "paper",
            "--output",
            "x",
        ]
    )
    assert (
        {k: vars(new)[k] for k in ("dataset", "keep", "scorer", "out")}
        == {k: vars(old)[k] for k in ("dataset", "keep", "scorer", "out")}
        == {"dataset": "shipped", "keep": "0.5", "scorer": "paper", "out": "x"}
    )
    help_text = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "--tp-keep" not in help_text and "--keep" in help_text
    for command in ("eval", "sweep", "visualize", "train", "finetune"):
        sub = parser._subparsers._group_actions[0].choices[command]
        flags = {f for a in sub._actions for f in a.option_strings}
        assert {
            "--model",
            "--checkpoint",
            "--set",
            "--dataset",
            "--data-root",
            "--out",
            "--device",
        } <= flags, command


def test_key_value_parser_reads_json_then_python_literals():
    from tp_spikformer.options import parse_overrides

    assert parse_overrides(["flag=true", "T=2", "dims=[1, 2]", "mode=per_sample", "x=None", "t=(1, 2)"]) == {
        "flag": True,
        "T": 2,
        "dims": [1, 2],
        "mode": "per_sample",
        "x": None,
        "t": (1, 2),
    }


@pytest.mark.slow
def test_default_output_folders_are_unique(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [
        "bench",
        "--model",
        "sdt_tiny",
        "--keeps",
        "0.5",
        "--batch-sizes",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    assert main(argv) == 0 and main(argv) == 0  # the same second: two folders, nothing overwritten
    folders = sorted(os.listdir(tmp_path / "tp-spikformer-out"))
    assert len(folders) == 2 and all(f.startswith("bench-") for f in folders)
    assert all((tmp_path / "tp-spikformer-out" / f / "bench.json").exists() for f in folders)


@pytest.mark.slow
def test_demo_machinery_on_tiny_models(tmp_path, capsys):
    from tp_spikformer.demo import run_demo

    tasks = {
        "segmentation": "sdt_v3_tiny_semfpn",
        "detection": "sdt_v3_tiny_fcos",
        "tracking": "sdtrack_tiny_test",
    }
    assert (
        run_demo(
            out=str(tmp_path),
            quick=True,
            progress=False,
            models=("sdt_tiny", "qkformer_tiny"),
            dataset="synthetic:40",
            pretrained=False,
            task_models=tasks,
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "== summary" in out and "| sdt_tiny |" in out
    files = set(os.listdir(tmp_path))
    assert {
        "demo.json",
        "demo.csv",
        "sdt_tiny_accuracy_vs_energy.png",
        "qkformer_tiny_accuracy_vs_throughput.png",
        "qkformer_tiny_tokens_0.png",
        "sdt_v3_tiny_semfpn_segmentation.png",
        "sdt_v3_tiny_fcos_detection.png",
        "sdtrack_tiny_test_tracking.png",
    } <= files
    assert "== summary of the tasks" in out and "| tracking | sdtrack_tiny_test | auc |" in out
    rows = json.loads((tmp_path / "demo.json").read_text())["rows"]
    assert len(rows) == 2 * (1 + 2 * 3)  # dense + 2 keeps x 3 scorers, per model
