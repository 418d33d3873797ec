"""Bad input, tried as a hostile or careless user would: every case is a clear error naming the option or
path and the fix, raised before any work is done, with nothing lost (issue 15's list, one test each)."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from tp_spikformer.cli import main as cli
from tp_spikformer.errors import UsageError
from tp_spikformer.models import CheckpointError, create_model, load_checkpoint

EVAL = ["eval", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--no-speed", "--energy-batches", "0"]


def fails(argv, message, capsys, tmp_path=None):
    """The command exits with 2, prints ``message`` and no traceback."""
    if tmp_path is not None and "--out" not in argv and argv[0] not in ("models", "scorers"):
        argv = [*argv, "--out", str(tmp_path / "out")]
    try:
        code = cli(argv)
    except SystemExit as e:  # argparse refuses a value before any command runs
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert "Traceback" not in err
    return err


# -- weights and checkpoints ----------------------------------------------------------------------------------


def test_nan_weights_are_refused_when_loaded():
    sd = create_model("sdt_tiny").state_dict()
    sd = {k: v * float("nan") if v.is_floating_point() else v for k, v in sd.items()}
    with pytest.raises(CheckpointError, match="NaN or infinite values"):
        create_model("sdt_tiny", checkpoint=sd)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"just some text\n", "text file"),
        (b"\x89PNG\r\n\x1a\n....", "unknown file format"),
    ],
)
def test_unreadable_checkpoints_say_what_the_file_is(tmp_path, content, message, capsys):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(content)
    err = fails(["eval", "--model", "sdt_tiny", "--checkpoint", str(path)], message, capsys, tmp_path)
    assert "--trust-checkpoint" not in err  # trusting an empty or text file would not help


def test_a_corrupt_checkpoint_is_an_error_even_when_trusted(tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    torch.save(create_model("sdt_tiny").state_dict(), path)
    path.write_bytes(path.read_bytes()[:300])  # truncated zip
    fails(
        ["eval", "--model", "sdt_tiny", "--checkpoint", str(path), "--trust-checkpoint"],
        "corrupt or truncated",
        capsys,
        tmp_path,
    )


def test_a_state_dict_with_a_non_tensor_entry_names_it():
    sd = dict(create_model("sdt_tiny").state_dict(), epoch=5)
    with pytest.raises(CheckpointError, match=r"not tensors: \['epoch'\]"):
        load_checkpoint(create_model("sdt_tiny"), sd)


# -- train / finetune / python -m entry points ------------------------------------------------------------------


TRAIN = [
    "train",
    "--model",
    "sdt_tiny",
    "--dataset",
    "synthetic:48",
    "--batch-size",
    "16",
    "--log-interval",
    "0",
]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eval-every", "0"], "--eval-every"),
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "-1"], "--epochs"),
        (["--scorer", "bogus"], "invalid choice: 'bogus'"),
        (["--threads", "-1"], "--threads"),
        (["--device", "bogus"], "is not a device"),
    ],
)
def test_training_arguments_are_checked_before_any_epoch(extra, message, capsys, tmp_path):
    out = tmp_path / "run"
    fails([*TRAIN, *extra, "--out", str(out)], message, capsys)
    assert not (out / "checkpoint.pt").exists()


def test_finetune_scorer_error_names_the_scorer_not_the_schedule(capsys, tmp_path):
    err = fails(["finetune", "--model", "sdt_fmnist", "--scorer", "bogus"], "'bogus'", capsys, tmp_path)
    assert "keep" not in err.split("error:")[-1]


@pytest.mark.slow
def test_python_m_entry_points_exit_2_without_a_traceback(tmp_path):
    for module, args in (
        ("tp_spikformer.evaluate", ["--model", "sdt_tiny", "--dataset", "synthetic:-5"]),
        ("tp_spikformer.train", ["--model", "nope"]),
    ):
        res = subprocess.run(
            [sys.executable, "-m", module, *args, "--out", str(tmp_path / module)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, res.stderr
        assert "error:" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_a_default_keep_works_on_every_registered_model(capsys, tmp_path):
    assert (
        cli(
            [
                "eval",
                "--model",
                "sdt_fmnist",
                "--pretrained",
                "--limit",
                "16",
                "--no-speed",
                "--energy-batches",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert "fraction:0.52" in capsys.readouterr().out  # the documented fraction for a 2-block SDT-V1


# -- data ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, message",
    [(["--limit", "-1"], "--limit"), (["--limit", "0"], "--limit"), (["--batch-size", "-1"], "--batch-size")],
)
def test_eval_sizes_are_checked(extra, message, capsys, tmp_path):
    fails([*EVAL, *extra], message, capsys, tmp_path)


def test_synthetic_count_must_be_positive(capsys, tmp_path):
    fails(["eval", "--model", "sdt_tiny", "--dataset", "synthetic:-5"], "n >= 1", capsys, tmp_path)


def test_an_empty_npz_is_refused_and_results_are_strict_json(capsys, tmp_path):
    from tp_spikformer.data import save_npz_slice

    path = tmp_path / "empty.npz"
    save_npz_slice(path, np.zeros((0, 1, 32, 32), np.uint8), np.zeros(0, np.int64))
    fails(["eval", "--model", "sdt_tiny", "--dataset", f"npz:{path}"], "has no samples", capsys, tmp_path)
    from tp_spikformer.jsonio import dumps

    assert dumps({"top1": float("nan")}) == '{\n  "top1": null\n}'


def test_labels_outside_the_models_classes_are_found_when_the_data_is_loaded(tmp_path, capsys):
    from tp_spikformer.data import save_npz_slice

    for label in (42, -1):
        path = tmp_path / f"labels{label}.npz"
        save_npz_slice(path, np.zeros((4, 1, 32, 32), np.uint8), np.array([0, 1, label, 2]))
        fails(["eval", "--model", "sdt_tiny", "--dataset", f"npz:{path}"], "labels", capsys, tmp_path)


def test_more_class_folders_than_classes(tmp_path, capsys):
    from PIL import Image

    for c in range(12):
        (tmp_path / "data" / f"c{c:02d}").mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "data" / f"c{c:02d}" / "a.png")
    err = fails(
        ["eval", "--model", "sdt_tiny", "--dataset", "imagefolder", "--data-root", str(tmp_path / "data")],
        "12 classes",
        capsys,
        tmp_path,
    )
    assert "num_classes" in err


def test_idx_gzip_bomb_costs_only_the_declared_size(tmp_path):
    from tp_spikformer.data import DatasetFormatError, read_idx

    header = struct.pack(">HBBIII", 0, 0x08, 3, 2, 4, 4)  # 2 images of 4x4 declared
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(header)
        f.write(bytes(32))
        for _ in range(64):  # 64 MB of trailing zeros, a few kB compressed
            f.write(bytes(1 << 20))
    with pytest.raises(DatasetFormatError, match="more than 32"):
        read_idx(bomb)
    huge = tmp_path / "huge-idx3-ubyte.gz"
    with gzip.open(huge, "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 0x08, 3, 60000, 4096, 4096))
    with pytest.raises(DatasetFormatError, match="more than the"):
        read_idx(huge)


def test_symlink_loops_in_image_folders_are_read_once(tmp_path):
    from PIL import Image

    from tp_spikformer.data import ImageFolder

    cls = tmp_path / "a"
    cls.mkdir()
    for i in range(2):
        Image.new("RGB", (4, 4)).save(cls / f"{i}.png")
    os.symlink(cls, cls / "loop")
    assert len(ImageFolder(tmp_path)) == 2


def test_events_outside_the_sensor_and_odd_polarities_are_refused():
    from tp_spikformer.data import events_to_frames

    ev = {
        "t": np.arange(4),
        "x": np.array([0, 1, 200, 3]),
        "y": np.zeros(4, int),
        "p": np.array([0, 1, 1, 0]),
    }
    with pytest.raises(UsageError, match="1 of 4 events .* outside the 4x4 sensor"):
        events_to_frames(ev, (4, 4), T=1)
    ev["x"] = np.array([0, 1, 2, 3])
    ev["p"] = np.array([0, 1, 7, 0])
    with pytest.raises(UsageError, match="polarities must be 0/1 or -1/1"):
        events_to_frames(ev, (4, 4), T=1)


def test_a_corrupt_event_npz_is_a_format_error(tmp_path):
    from tp_spikformer.data import DatasetFormatError, load_event_sample

    path = tmp_path / "sample.npz"
    np.savez_compressed(path, t=np.arange(10), x=np.arange(10), y=np.arange(10), p=np.ones(10))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DatasetFormatError, match="sample.npz"):
        load_event_sample(path)


# -- models and inputs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sdt_tiny", "qkformer_tiny", "spikformer_tiny", "sdt_v2_tiny", "spikingformer_tiny"]
)
@pytest.mark.parametrize("T", [-1, True, 0, 2.5, "2"])
def test_time_steps_must_be_a_positive_int(name, T):
    with pytest.raises(UsageError, match="T must be"):
        create_model(name, T=T)


@pytest.mark.parametrize(
    "name",
    ["sdt_tiny", "qkformer_tiny", "spikformer_tiny", "sdt_v3_tiny", "sdt_v2_tiny", "spikingformer_tiny"],
)
def test_num_classes_must_not_be_negative(name):
    with pytest.raises(UsageError, match="num_classes must be an integer >= 0"):
        create_model(name, num_classes=-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_input_dtype_mismatch_says_how_to_convert(dtype):
    model = create_model("sdt_tiny").eval()
    with pytest.raises(UsageError, match=r"weights are torch.float32; convert the input"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype))


@pytest.mark.parametrize(
    "name, shape",
    [("qkformer_tiny", (0, 3, 32, 32)), ("sdt_v3_tiny", (0, 3, 64, 64)), ("sdt_tiny", (1, 3, 0, 0))],
)
def test_empty_batches_and_empty_images(name, shape):
    model = create_model(name).eval()
    with pytest.raises(UsageError, match="empty batch|at least"):
        model(torch.zeros(shape))


# -- pruning state -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_state_fields_and_custom_scorers():
    from tp_spikformer.pruning import apply_tp

    model = create_model("sdt_v3_tiny").eval()
    state = apply_tp(model, keep=0.5)
    with pytest.raises(UsageError, match="mode='stop'"):
        state.mode = "drop"  # SDT-V3 would silently give wrong outputs
    with pytest.raises(UsageError, match="odd integer from 1 to 99"):
        state.window = 20001
    with pytest.raises(UsageError, match="odd integer"):
        state.window = True
    with pytest.raises(UsageError, match="gather_order"):
        state.gather_order = "best"

    def listy(x, ctx):
        return [0.0] * x.shape[-1]

    state.scorer = listy
    with pytest.raises(TypeError, match="scorer 'listy' returned list"):
        model(torch.randn(1, 3, 64, 64))


# -- command-line odds and ends ----------------------------------------------------------------------------------


def test_out_that_is_a_file_under_a_file_or_read_only_is_refused_before_work(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    fails([*EVAL, "--out", str(f)], "is a file", capsys)
    fails([*EVAL, "--out", str(f / "sub")], "is a file, so no folder", capsys)
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        fails([*EVAL, "--out", str(ro)], "not writable", capsys)


def test_visualize_refuses_negative_indices_and_corrupt_images(tmp_path, capsys):
    fails(
        ["visualize", "--model", "sdt_tiny", "--dataset", "synthetic:8", "--indices", "-1"],
        "--indices",
        capsys,
        tmp_path,
    )
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    fails(["visualize", "--model", "sdt_tiny", "--image", str(bad)], "cannot decode", capsys, tmp_path)


def test_stale_temporary_checkpoints_are_removed_on_the_next_start(tmp_path):
    from tp_spikformer.training import remove_stale_temporaries

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f"checkpoint.pt.tmp.{int(dead.stdout)}"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / f"checkpoint.pt.tmp.{os.getpid()}"
    mine.write_bytes(b"being written")
    assert remove_stale_temporaries(str(tmp_path)) == [str(stale)]
    assert not stale.exists() and mine.exists()
