"""The task commands on tiny models: eval --task (per-variant files), train --task and calibrate --task, and
their errors."""

import json
import os

import pytest

from tp_spikformer.cli import main

SPEED = [
    "--repeats",
    "1",
    "--speed-batch-size",
    "2",
    "--energy-batches",
    "1",
    "--batch-size",
    "2",
    "--no-progress",
]

TRACKING_SPEED = ["--energy-batches", "1", "--batch-size", "2", "--no-progress"]  # its loop measures fps


@pytest.mark.slow
def test_eval_segmentation_writes_prediction_pngs_per_variant(tmp_path):
    assert (
        main(
            [
                "eval",
                "--task",
                "segmentation",
                "--model",
                "sdt_v3_tiny_semfpn",
                "--dataset",
                "scenes:3",
                "--keep",
                "0.5",
                *SPEED,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["dense", "official@fraction:0.5"]
    assert all(r["mIoU"] is not None and r["backbone_img_per_s"] > 0 for r in rows)
    for r in rows:
        assert sorted(os.listdir(tmp_path / r["variant"])) == [f"scene_{i:06d}.png" for i in range(3)]


@pytest.mark.slow
def test_eval_detection_writes_coco_results_per_variant(tmp_path):
    pytest.importorskip("pycocotools", reason="pycocotools is not installed ([detection] extra)")
    assert (
        main(
            [
                "eval",
                "--task",
                "detection",
                "--model",
                "sdt_v3_tiny_fcos",
                "--dataset",
                "scenes:3",
                "--keep",
                "0.5",
                *SPEED,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    for variant in ("dense", "official@fraction:0.5"):
        entries = json.loads((tmp_path / variant / "detections.json").read_text())
        assert isinstance(entries, list)
        assert all({"image_id", "category_id", "bbox", "score"} <= set(e) for e in entries)


@pytest.mark.slow
def test_eval_tracking_writes_result_files_per_sequence(tmp_path):
    assert (
        main(
            [
                "eval",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--dataset",
                "synthetic:2",
                "--keep",
                "0.5",
                *TRACKING_SPEED,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert all(r["auc"] is not None and r["fps"] > 0 for r in rows)
    assert sorted(os.listdir(tmp_path / "dense")) == ["synth_0000.txt", "synth_0001.txt"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["eval", "--task", "detection", "--model", "sdt_tiny", "--dataset", "scenes:2"],
            "is a classification model",
        ),
        (
            ["eval", "--task", "segmentation", "--model", "sdt_v3_tiny_semfpn", "--dataset", "coco"],
            "unknown segmentation",
        ),
        (["eval", "--task", "detection", "--model", "sdt_v3_tiny_fcos", "--dataset", "coco"], "--data-root"),
        (["train", "--task", "tracking", "--model", "sdtrack_tiny_test"], "--data-root"),
        (  # options a trainer would ignore are refused, abbreviations included
            ["train", "--task", "segmentation", "--model", "sdt_v3_tiny_semfpn", "--comp"],
            "--task segmentation training does not use --compile",
        ),
        (
            [
                "train",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--resume",
                "auto",
                "--amp",
                "bf16",
            ],
            "does not use --amp, --resume",
        ),
        (["train", "--model", "sdt_tiny", "--crop-size", "16"], "--crop-size: only the --task"),
        # options the run would not read are refused, not dropped
        (
            [
                "eval",
                "--task",
                "segmentation",
                "--model",
                "sdt_v3_tiny_semfpn",
                "--dataset",
                "scenes:2",
                "--frames",
                "2",
            ],
            "--frames does nothing with --task segmentation",
        ),
        (
            [
                "eval",
                "--task",
                "detection",
                "--model",
                "sdt_v3_tiny_fcos",
                "--dataset",
                "scenes:2",
                "--split",
                "bogus",
            ],
            "no split 'bogus'; choose a training split",
        ),
        (
            [
                "eval",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--dataset",
                "synthetic:1",
                "--split",
                "train",
            ],
            "has only the split test",
        ),
        (
            [
                "eval",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--dataset",
                "synthetic:1",
                "--data-root",
                "x",
            ],
            "reads no folder",
        ),
        (
            [
                "eval",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--dataset",
                "synthetic:1",
                "--no-speed",
            ],
            "--no-speed does nothing with --task tracking",
        ),
        (
            [
                "sweep",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--repeats",
                "2",
                "--speed-batch-size",
                "2",
            ],
            "--speed-batch-size, --repeats do nothing with --task tracking",
        ),
        (  # --limit bounds the scenes calibrate draws from
            [
                "calibrate",
                "--task",
                "segmentation",
                "--model",
                "sdt_v3_tiny_semfpn",
                "--dataset",
                "scenes:8",
                "--limit",
                "2",
                "--calibration-size",
                "4",
                "--budget",
                "0.9",
            ],
            "calibration_size=4 but the data has only 2 samples",
        ),
    ],
)
def test_task_commands_refuse_bad_input(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_train_segmentation_and_detection_write_weights(tmp_path):
    for task, model in (("segmentation", "sdt_v3_tiny_semfpn"), ("detection", "sdt_v3_tiny_fcos")):
        if task == "detection":
            pytest.importorskip("pycocotools", reason="pycocotools is not installed ([detection] extra)")
        out = tmp_path / task
        assert (
            main(
                [
                    "train",
                    "--task",
                    task,
                    "--model",
                    model,
                    "--dataset",
                    "scenes:8",
                    "--test-dataset",
                    "scenes:2",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "4",
                    "--threads",
                    "1",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        assert (out / "model.pt").exists() and (out / "metrics.json").exists()


@pytest.mark.slow
def test_make_tracking_then_train_tracking(tmp_path):
    data = tmp_path / "synth"
    assert (
        main(
            [
                "make-tracking",
                "--train",
                "2",
                "--test",
                "1",
                "--frames",
                "6",
                "--source",
                "shipped",
                "--out",
                str(data),
                "--no-progress",
            ]
        )
        == 0
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--data-root",
                str(data),
                "--epochs",
                "1",
                "--samples-per-epoch",
                "8",
                "--batch-size",
                "4",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "model.pt").exists()


@pytest.mark.slow
def test_cli_calibrate_segmentation_writes_a_schedule_eval_accepts(tmp_path, capsys):
    out = tmp_path / "cal"
    args = ["--model", "sdt_v3_tiny_semfpn", "--task", "segmentation", "--batch-size", "4", "--threads", "1"]
    assert (
        main(
            [
                "calibrate",
                *args,
                "--dataset",
                "scenes:8",
                "--calibration-size",
                "4",
                "--budget",
                "0.9",
                "--levels",
                "0.5",
                "0.25",
                "--refine-rounds",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "pixel_accuracy" in printed
    schedule = json.loads((out / "schedule.json").read_text())
    assert schedule["rule"] == "fraction" and schedule["keep"].startswith("fraction:")
    res = tmp_path / "eval"
    assert (
        main(
            [
                "eval",
                *args,
                "--dataset",
                "scenes:2",
                "--keep",
                str(out / "schedule.json"),
                *SPEED,
                "--out",
                str(res),
            ]
        )
        == 0
    )
    rows = json.loads((res / "results.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["mIoU"] is not None for r in rows)


def test_cli_calibrate_refuses_tracking_and_a_model_of_another_task(tmp_path, capsys):
    assert (
        main(
            [
                "calibrate",
                "--task",
                "tracking",
                "--model",
                "sdtrack_tiny_test",
                "--budget",
                "0.5",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    assert "supports classification, segmentation and detection" in capsys.readouterr().err
    assert (
        main(
            [
                "calibrate",
                "--task",
                "segmentation",
                "--model",
                "sdt_tiny",
                "--budget",
                "0.5",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "is a classification model" in capsys.readouterr().err


def test_validation_scenes_take_their_objects_from_data_root(tmp_path):
    """--data-root applies to validation scenes too: objects from the Fashion-MNIST test split there."""
    import numpy as np

    from tp_spikformer.api import task_spec
    from tp_spikformer.data import write_idx
    from tp_spikformer.data.mnist import IDX_FILES
    from tp_spikformer.models import create_model

    images = np.zeros((20, 28, 28), np.uint8)
    images[:, 6:22, 6:22] = 200
    write_idx(tmp_path / IDX_FILES["test"][0], images)
    write_idx(tmp_path / IDX_FILES["test"][1], (np.arange(20) % 10).astype(np.uint8))
    model = create_model("sdt_v3_tiny_semfpn")
    for split in ("validation", "test"):
        data = task_spec("segmentation").load_dataset(
            "scenes:2", root=str(tmp_path), split=split, model=model
        )
        assert data.objects.source == f"{tmp_path} (test)" and len(data.objects) == 20
    shipped = task_spec("segmentation").load_dataset("scenes:2", root=None, split="validation", model=model)
    assert shipped.objects.source.startswith("shipped")


class _TrainerCalled(Exception):
    pass


@pytest.mark.parametrize(
    "task, model, trainer",
    [
        ("segmentation", "sdt_v3_tiny_semfpn", "train_segmentation"),
        ("detection", "sdt_v3_tiny_fcos", "train_detection"),
        ("tracking", "sdtrack_tiny_test", "train_tracker"),
    ],
)
def test_task_training_threads_0_divides_the_cores_like_the_other_commands(task, model, trainer, monkeypatch):
    """``--threads 0`` is "automatic" (the usable cores among the local processes) for the task trainers too,
    not torch's own default."""
    import importlib

    import tp_spikformer.runtime

    engine = importlib.import_module(f"tp_spikformer.tasks.{task}.engine")

    def fake_trainer(*args, **kwargs):
        raise _TrainerCalled(kwargs["threads"])

    monkeypatch.setattr(engine, trainer, fake_trainer)
    monkeypatch.setattr(tp_spikformer.runtime, "available_cpus", lambda: 3)
    data = []
    if task == "tracking":  # no sequences are read: the trainer is replaced
        import tp_spikformer.data.tracking

        monkeypatch.setattr(tp_spikformer.data.tracking, "TrackingDataset", lambda *args: None)
        data = ["--data-root", "unused"]
    with pytest.raises(_TrainerCalled) as called:
        main(["train", "--task", task, "--model", model, *data, "--threads", "0", "--epochs", "1"])
    assert called.value.args == (3,)
