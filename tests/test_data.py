"""Data package: small generated files only (IDX, CIFAR pickles, PNG folders, event files)."""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tp_spikformer import data as D
from tp_spikformer.data import functional as TF

Image = pytest.importorskip("PIL.Image")


# ---------------------------------------------------------------------------------------------------
# helpers


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write_mnist_dir(root, n_train=12, n_test=7, gz=True, hw=(28, 28), seed=0):
    rng = _rng(seed)
    sfx = ".gz" if gz else ""
    out = {}
    for split, n, (img_stem, lbl_stem) in (
        ("train", n_train, D.mnist.IDX_FILES["train"]),
        ("test", n_test, D.mnist.IDX_FILES["test"]),
    ):
        images = rng.integers(0, 256, (n, *hw), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        D.write_idx(os.path.join(root, img_stem + sfx), images)
        D.write_idx(os.path.join(root, lbl_stem + sfx), labels)
        out[split] = (images, labels)
    return out


def _spikingjelly_frames(ev, H, W, T, split_by):
    """A transcription of spikingjelly's reference loops (cal_fixed_frames_number_segment_index +
    integrate_events_segment_to_frame) to compare against."""
    t, x, y, p = ev["t"], ev["x"], ev["y"], ev["p"]
    N = t.size
    j_l = np.zeros(T, dtype=int)
    j_r = np.zeros(T, dtype=int)
    if split_by == "number":
        di = N // T
        for i in range(T):
            j_l[i] = i * di
            j_r[i] = j_l[i] + di
        j_r[-1] = N
    else:
        dt = (t[-1] - t[0]) // T
        idx = np.arange(N)
        for i in range(T):
            t_l = dt * i + t[0]
            t_r = t_l + dt
            m = idx[np.logical_and(t >= t_l, t < t_r)]
            j_l[i] = m[0]
            j_r[i] = m[-1] + 1
        j_r[-1] = N
    frames = np.zeros([T, 2, H, W])
    for i in range(T):
        frame = np.zeros([2, H * W])
        xs, ys, ps = x[j_l[i] : j_r[i]].astype(int), y[j_l[i] : j_r[i]].astype(int), p[j_l[i] : j_r[i]]
        masks = [ps == 0, np.logical_not(ps == 0)]
        for c in range(2):
            pos = ys[masks[c]] * W + xs[masks[c]]
            counts = np.bincount(pos)
            frame[c][np.arange(counts.size)] += counts
        frames[i] = frame.reshape(2, H, W)
    return frames


def _random_events(n, H=16, W=20, t_max=10_000, seed=0):
    rng = _rng(seed)
    return {
        "t": np.sort(rng.integers(0, t_max, n)).astype(np.int64),
        "x": rng.integers(0, W, n),
        "y": rng.integers(0, H, n),
        "p": rng.integers(0, 2, n),
    }


# ---------------------------------------------------------------------------------------------------
# IDX / MNIST / Fashion-MNIST


@pytest.mark.parametrize("suffix", [".gz", ""])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    arr = (_rng().standard_normal((3, 5, 4)) * 50).astype(dtype)
    path = D.write_idx(tmp_path / f"a-idx3{suffix}", arr)
    back = D.read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    assert back.flags.writeable


def test_idx_header_is_big_endian_with_standard_magic(tmp_path):
    images = np.zeros((2, 28, 28), np.uint8)
    path = D.write_idx(tmp_path / "x-idx3-ubyte", images)
    with open(path, "rb") as f:
        raw = f.read()
    assert struct.unpack(">IIII", raw[:16]) == (2051, 2, 28, 28)
    path = D.write_idx(tmp_path / "y-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with open(path, "rb") as f:
        assert struct.unpack(">II", gzip.decompress(f.read())[:8]) == (2049, 2)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path, gz):
    ref = _write_mnist_dir(tmp_path, gz=gz)
    ds = D.FashionMNIST(tmp_path, split="train")
    assert len(ds) == 12 and ds.classes[0] == "T-shirt/top" and len(ds.classes) == 10
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 3
    np.testing.assert_allclose(x[0].numpy(), ref["train"][0][3] / 255.0, atol=1e-7)
    test = D.FashionMNIST(tmp_path, split="test", limit=5)
    assert len(test) == 5 and test.targets.tolist() == [0, 1, 2, 3, 4]


def test_in_memory_batch_preprocessing(tmp_path):
    _write_mnist_dir(tmp_path)
    ds = D.FashionMNIST(tmp_path, split="train", size=32, channels=3, normalize=True)
    assert ds.output_shape == (3, 32, 32)
    xb = ds.get_batch([0, 1, 2])
    assert xb.shape == (3, 3, 32, 32) and xb.is_contiguous()
    assert torch.equal(xb[:, 0], xb[:, 2])  # grey repeated
    # Same as the explicit pipeline: [0,1] -> bilinear resize -> normalise.
    raw = ds.images[:3].float() / 255
    want = (TF.resize(raw, 32, "bilinear") - D.FASHION_MNIST_MEAN[0]) / D.FASHION_MNIST_STD[0]
    torch.testing.assert_close(xb[:, :1], want)
    # A single item equals its row of a batch; the DataLoader batch path (__getitems__) agrees.
    torch.testing.assert_close(ds[1][0], xb[1])
    loader = torch.utils.data.DataLoader(ds, batch_size=5, shuffle=False)
    xs, ys = next(iter(loader))
    assert xs.shape == (5, 3, 32, 32) and ys.tolist() == [0, 1, 2, 3, 4]
    torch.testing.assert_close(xs[:3], xb)


def test_in_memory_batches_cover_everything_once(tmp_path):
    _write_mnist_dir(tmp_path, n_train=23)
    ds = D.FashionMNIST(tmp_path, split="train", size=16)
    seen = []
    g = torch.Generator().manual_seed(0)
    for xb, yb in ds.batches(5, shuffle=True, generator=g, augment=D.BatchAugment(padding=2, generator=g)):
        assert xb.shape[1:] == (1, 16, 16) and yb.dtype == torch.int64
        seen.append(xb.shape[0])
    assert seen == [5, 5, 5, 5, 3]
    assert sum(xb.shape[0] for xb, _ in ds.batches(5, drop_last=True)) == 20


def test_with_data_config_duck_typing(tmp_path):
    _write_mnist_dir(tmp_path)
    ds = D.FashionMNIST(tmp_path, split="test")
    cfg = SimpleNamespace(
        input_size=(3, 32, 32), crop_pct=None, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.25,) * 3
    )
    out = ds.with_data_config(cfg)
    assert out.get_batch([0]).shape == (1, 3, 32, 32) and ds.output_shape == (1, 28, 28)
    model_like = SimpleNamespace(config=SimpleNamespace(data=cfg))
    assert D.data_spec(model_like).input_size == (3, 32, 32)
    assert D.data_spec({"input_size": (1, 8, 8)}).mean is None
    with pytest.raises(ValueError, match="event-frame"):
        ds.with_data_config({"input_size": (2, 64, 64), "event_frames": True})


def test_npz_slice_round_trip(tmp_path):
    ref = _write_mnist_dir(tmp_path / "fm")
    ds = D.FashionMNIST(tmp_path / "fm", split="test")
    path = ds.save_npz(tmp_path / "slice.npz", n=4, note="tiny")
    back = D.FashionMNIST.from_npz(path, size=32, channels=3)
    assert isinstance(back, D.FashionMNIST) and len(back) == 4
    assert back.classes == list(D.FASHION_MNIST_CLASSES) and back.meta["note"] == "tiny"
    np.testing.assert_array_equal(back.images[:, 0].numpy(), ref["test"][0][:4])
    assert back[0][0].shape == (3, 32, 32)
    loaded = D.load_npz_slice(path)
    assert loaded["labels"].tolist() == [0, 1, 2, 3]
    # written without pickles, and the exact file name (no ".npz" appended twice)
    assert os.path.isfile(tmp_path / "slice.npz")
    np.load(path, allow_pickle=False).close()


def test_idx_errors_name_the_path_and_layout(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(D.DatasetNotFoundError, match=r"nope does not exist.*Fashion-MNIST IDX layout"):
        D.FashionMNIST(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.FashionMNIST(empty, split="train")
    msg = str(exc.value)
    assert f"expected train-images-idx3-ubyte.gz or train-images-idx3-ubyte in {empty}" in msg
    assert "Fashion-MNIST IDX layout" in msg
    with pytest.raises(ValueError, match="unknown split"):
        D.FashionMNIST(empty, split="validation")


def test_idx_wrong_magic_truncation_and_count_mismatch(tmp_path):
    _write_mnist_dir(tmp_path)
    img = tmp_path / "train-images-idx3-ubyte.gz"
    # a label file under the image name: magic 2049 instead of 2051
    D.write_idx(img, np.zeros(12, np.uint8))
    with pytest.raises(
        D.DatasetFormatError, match=r"train-images-idx3-ubyte.gz: IDX magic 2049.*expected 2051"
    ):
        D.FashionMNIST(tmp_path, split="train")
    # garbage header
    img.write_bytes(gzip.compress(b"\x12\x34\x56\x78" + bytes(20)))
    with pytest.raises(D.DatasetFormatError, match="bad IDX magic"):
        D.FashionMNIST(tmp_path, split="train")
    # truncated data
    raw = struct.pack(">IIII", 2051, 12, 28, 28) + bytes(100)
    img.write_bytes(gzip.compress(raw))
    with pytest.raises(
        D.DatasetFormatError, match=r"header says 12 x 28 x 28 \(9408 data bytes\) but the file has 100"
    ):
        D.FashionMNIST(tmp_path, split="train")
    # 11 images, 12 labels
    D.write_idx(img, np.zeros((11, 28, 28), np.uint8))
    with pytest.raises(D.DatasetFormatError, match="11 images but 12 labels"):
        D.FashionMNIST(tmp_path, split="train")
    # not gzip although named .gz -> read as raw bytes, still validated
    img.write_bytes(b"\x1f\x8b\x00\x00garbage")
    with pytest.raises(D.DatasetFormatError, match="cannot read"):
        D.FashionMNIST(tmp_path, split="train")


def test_mnist_raw_files_under_raw_subfolder(tmp_path):
    _write_mnist_dir(tmp_path / "raw", gz=False)
    ds = D.MNIST(tmp_path, split="test")
    assert len(ds) == 7 and ds.classes == [str(i) for i in range(10)]
    with pytest.raises(TypeError, match="pass root"):
        D.MNIST()


@pytest.mark.skipif(not os.path.isdir(D.FASHION_MNIST_ROOT), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_statistics():
    ds = D.FashionMNIST(split="test")
    assert len(ds) == 10_000 and ds.images.shape[1:] == (1, 28, 28)
    assert np.bincount(ds.targets.numpy()).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------------------
# CIFAR


def _write_cifar10(root, per_batch=4, with_meta=True, seed=0):
    rng = _rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": data}, f, protocol=2)
        batches[name] = (data, labels)
    if with_meta:
        names = [n.encode() for n in D.CIFAR10_CLASSES]
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f)
    return folder, batches


def test_cifar10_pickles(tmp_path):
    folder, batches = _write_cifar10(tmp_path)
    train = D.CIFAR10(tmp_path, split="train")
    assert len(train) == 20 and train.classes[0] == "airplane"
    data, labels = batches["data_batch_2"]
    x, y = train[4]  # first image of the second batch
    assert y == labels[0] and x.shape == (3, 32, 32)
    np.testing.assert_allclose(x.numpy(), data[0].reshape(3, 32, 32) / 255.0, atol=1e-7)
    test = D.CIFAR10(folder, split="test", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # folder itself
    x, _ = test[0]
    np.testing.assert_allclose(
        x.numpy(), batches["test_batch"][0][0].reshape(3, 32, 32) / 127.5 - 1, atol=1e-6
    )


def test_cifar100_fine_and_coarse(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = _rng().integers(0, 256, (6, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        with open(folder / name, "wb") as f:
            pickle.dump(
                {b"data": data, b"fine_labels": [99, 1, 2, 3, 4, 5], b"coarse_labels": [19, 0, 0, 1, 1, 2]}, f
            )
    ds = D.CIFAR100(tmp_path, split="train")
    assert ds.targets.tolist()[0] == 99 and len(ds.classes) == 100
    coarse = D.CIFAR100(tmp_path, split="test", coarse=True)
    assert coarse.targets.tolist()[0] == 19 and len(coarse.classes) == 20


def test_cifar_errors(tmp_path):
    with pytest.raises(
        D.DatasetNotFoundError, match=r"expected cifar-10-batches-py/data_batch_1 in .*CIFAR-10 python"
    ):
        D.CIFAR10(tmp_path, split="train")
    folder, _ = _write_cifar10(tmp_path)
    os.remove(folder / "data_batch_3")
    with pytest.raises(D.DatasetNotFoundError, match=r"expected data_batch_3 in .*cifar-10-batches-py"):
        D.CIFAR10(tmp_path, split="train")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 1]}, f)
    with pytest.raises(D.DatasetFormatError, match=r"test_batch: missing key b'labels'"):
        D.CIFAR10(tmp_path, split="test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(D.DatasetFormatError, match="2 images but 3"):
        D.CIFAR10(tmp_path, split="test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(SimpleNamespace(a=1), f)  # not a plain container: refused, not executed
    with pytest.raises(D.DatasetFormatError, match="refusing to load global"):
        D.CIFAR10(tmp_path, split="test")


# ---------------------------------------------------------------------------------------------------
# ImageFolder


def _write_image_folder(root):
    arrs = {}
    for cls, n in (("dog", 2), ("cat", 3)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            a = _rng(len(arrs)).integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            name = f"img{i}.PNG" if i == 0 else f"img{i}.png"
            Image.fromarray(a).save(root / cls / name)
            arrs[(cls, i)] = a
        (root / cls / "notes.txt").write_text("ignored")
    return arrs


def test_image_folder(tmp_path):
    arrs = _write_image_folder(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "cat" / "grey.bmp")
    ds = D.ImageFolder(tmp_path)
    assert ds.classes == ["cat", "dog"] and len(ds) == 6
    assert ds.targets == [0, 0, 0, 0, 1, 1]
    x, y = ds[1]  # cat/img0.PNG (sorted: grey.bmp, img0.PNG, img1.png, img2.png)
    assert y == 0 and x.shape == (3, 10, 12)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), arrs[("cat", 0)] / 255.0, atol=1e-7)
    assert ds[0][0].shape == (3, 4, 4)  # grey converted to RGB
    cfg = {
        "input_size": (3, 8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5,) * 3,
        "std": (0.5,) * 3,
    }
    ds2 = D.ImageFolder(tmp_path, transform=D.build_eval_transform(cfg))
    assert ds2[2][0].shape == (3, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(D.DatasetNotFoundError, match=r"missing does not exist.*root/<class>/<image>"):
        D.ImageFolder(tmp_path / "missing")
    with pytest.raises(D.DatasetNotFoundError, match="expected at least one class folder"):
        D.ImageFolder(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("")
    with pytest.raises(
        D.DatasetNotFoundError, match=r"no .jpg/.jpeg/.png/.bmp/.webp files in class folder\(s\) a"
    ):
        D.ImageFolder(tmp_path)
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    ds = D.ImageFolder(tmp_path)
    with pytest.raises(D.DatasetFormatError, match="bad.png: cannot decode image"):
        ds[0]


# ---------------------------------------------------------------------------------------------------
# transforms


def _ramp(h, w, c=1):
    return torch.arange(c * h * w, dtype=torch.float32).reshape(c, h, w)


def test_center_crop_picks_the_centre():
    x = _ramp(6, 8)
    out = TF.center_crop(x, (2, 4))
    assert torch.equal(out, x[:, 2:4, 2:6])
    # torchvision rounding: offsets round((H - h) / 2) with round-half-even -> (5-2)/2 = 1.5 -> 2
    assert torch.equal(TF.center_crop(_ramp(5, 5), 2), _ramp(5, 5)[:, 2:4, 2:4])
    img = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8))
    np.testing.assert_array_equal(
        np.asarray(TF.center_crop(img, (2, 4))), x[0, 2:4, 2:6].numpy().astype(np.uint8)
    )
    # larger crop pads with zeros around the image
    big = TF.center_crop(torch.ones(1, 2, 2), 5)
    assert big.shape == (1, 5, 5) and big.sum() == 4 and big[0, 1:3, 1:3].sum() == 4
    big_pil = np.asarray(TF.center_crop(Image.fromarray(np.full((2, 2), 9, np.uint8)), 5))
    np.testing.assert_array_equal(big_pil, big[0].numpy() * 9)


def test_resize_output_size_and_pil_equality():
    assert TF.resized_output_size(300, 400, 224) == (224, 298)
    assert TF.resized_output_size(400, 300, 224) == (298, 224)
    assert TF.resized_output_size(300, 400, (10, 20)) == (10, 20)
    arr = _rng().integers(0, 256, (30, 40, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    for interp, flt in (
        ("bicubic", Image.Resampling.BICUBIC),
        ("bilinear", Image.Resampling.BILINEAR),
        ("nearest", Image.Resampling.NEAREST),
    ):
        ours = TF.resize(img, 20, interp)
        assert ours.size == (26, 20)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(img.resize((26, 20), flt)))
    # the tensor path (torch's antialiased port of Pillow's filters) is within one level of Pillow on
    # smooth content (Pillow clamps to uint8 between its two passes, so bicubic overshoot differs)
    yy, xx = np.mgrid[0:30, 0:40]
    smooth = (127 + 100 * np.sin(xx / 5) * np.cos(yy / 7))[..., None].repeat(3, 2).astype(np.uint8)
    t = torch.from_numpy(smooth).permute(2, 0, 1).contiguous()
    for interp, flt in (("bicubic", Image.Resampling.BICUBIC), ("bilinear", Image.Resampling.BILINEAR)):
        for size in ((20, 26), (45, 60)):
            ours = TF.resize(t, size, interp)
            assert ours.dtype == torch.uint8 and ours.shape == (3, *size)
            pil = torch.from_numpy(np.array(Image.fromarray(smooth).resize(size[::-1], flt))).permute(2, 0, 1)
            assert (ours.int() - pil.int()).abs().max() <= 1
    assert TF.resize(t, 30) is t  # already the size


def test_to_tensor_normalize_and_channels():
    arr = _rng().integers(0, 256, (4, 5, 3), dtype=np.uint8)
    t = TF.to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 4, 5) and t.dtype == torch.float32
    np.testing.assert_allclose(t.permute(1, 2, 0).numpy(), arr / 255.0, atol=1e-7)
    torch.testing.assert_close(TF.to_tensor(arr), t)
    torch.testing.assert_close(TF.to_tensor(torch.from_numpy(arr).permute(2, 0, 1)), t)
    grey = TF.to_tensor(arr[:, :, 0])
    assert grey.shape == (1, 4, 5)
    n = TF.normalize(t, (0.1, 0.2, 0.3), (0.5, 0.25, 2.0))
    torch.testing.assert_close(n[1], (t[1] - 0.2) / 0.25)
    with pytest.raises(ValueError, match="2 values but the image has 3 channels"):
        TF.normalize(t, (0.1, 0.2), (1.0, 1.0))
    rgb = TF.to_channels(grey, 3)
    assert rgb.shape == (3, 4, 5) and torch.equal(rgb[0], rgb[2])
    luma = TF.to_channels(torch.from_numpy(arr).permute(2, 0, 1), 1)
    pil_l = np.asarray(Image.fromarray(arr).convert("L")).astype(int)
    assert np.abs(luma[0].numpy().astype(int) - pil_l).max() <= 1


def test_build_eval_transform_timm_rule():
    arr = _rng().integers(0, 256, (300, 400, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cfg = SimpleNamespace(
        input_size=(3, 224, 224),
        crop_pct=0.875,
        interpolation="bicubic",
        mean=mean,
        std=std,
        event_frames=False,
    )
    out = D.build_eval_transform(cfg)(img)
    # manual torchvision-style pipeline: Resize(256, bicubic) -> CenterCrop(224) -> ToTensor -> Normalize
    r = img.resize((341, 256), Image.Resampling.BICUBIC)
    top, left = int(round((256 - 224) / 2)), int(round((341 - 224) / 2))
    c = np.asarray(r.crop((left, top, left + 224, top + 224))).astype(np.float32) / 255
    want = (torch.from_numpy(c).permute(2, 0, 1) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(
        3, 1, 1
    )
    torch.testing.assert_close(out, want)
    assert D.eval_resize_size((224, 224), 0.95) == 235
    assert D.eval_resize_size((224, 224), 224 / 232) == 232
    assert D.eval_resize_size((224, 224), 1.0) == 224
    # crop_pct None: untouched at the input size, resized otherwise; grey -> 3 channels
    cifar = {"input_size": (3, 32, 32), "crop_pct": None, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    small = _rng().integers(0, 256, (32, 32, 3), dtype=np.uint8)
    torch.testing.assert_close(D.build_eval_transform(cifar)(small), TF.to_tensor(small) * 2 - 1)
    assert D.build_eval_transform(cifar)(Image.fromarray(arr[:, :, 0])).shape == (3, 32, 32)
    no_norm = D.build_eval_transform({"input_size": (1, 28, 28)})(np.zeros((28, 28), np.uint8))
    assert no_norm.shape == (1, 28, 28) and no_norm.abs().sum() == 0


def test_build_eval_transform_event_frames():
    cfg = {"input_size": (2, 64, 64), "event_frames": True}
    frames = torch.rand(3, 2, 128, 128)
    out = D.build_eval_transform(cfg)(frames)
    assert out.shape == (3, 2, 64, 64)
    assert D.build_eval_transform({"input_size": (2, 128, 128), "event_frames": True})(frames) is frames


def test_train_transforms_are_seeded_and_shaped():
    img = Image.fromarray(_rng().integers(0, 256, (40, 50, 3), dtype=np.uint8))
    cifar = {"input_size": (3, 32, 32), "mean": (0.5,) * 3, "std": (0.5,) * 3}
    imnet = {"input_size": (3, 24, 24), "crop_pct": 0.9, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    for cfg in (cifar, imnet):
        a = D.build_train_transform(cfg, generator=torch.Generator().manual_seed(1))(img)
        b = D.build_train_transform(cfg, generator=torch.Generator().manual_seed(1))(img)
        assert a.shape == (3, *cfg["input_size"][1:]) and torch.equal(a, b)
    with pytest.raises(ValueError, match="unknown train transform mode"):
        D.build_train_transform(cifar, mode="mixup")
    ev = D.build_train_transform({"input_size": (2, 64, 64), "event_frames": True})(
        torch.rand(2, 2, 128, 128)
    )
    assert ev.shape == (2, 2, 64, 64)


def test_random_crop_with_padding_is_a_window_of_the_padded_image():
    x = _ramp(6, 6) + 1
    g = torch.Generator().manual_seed(0)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for _ in range(10):
        out = D.RandomCrop(6, padding=2, generator=g)(x)
        windows = [padded[:, i : i + 6, j : j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out, w) for w in windows)


def test_batch_augment_matches_per_image_windows():
    x = torch.stack([_ramp(5, 7, 2) + 100 * i for i in range(6)])
    out = D.random_crop_batch(x, 2, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(6):
        windows = [padded[b, :, i : i + 5, j : j + 7] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)
    flipped = D.random_hflip_batch(x, 1.0)
    assert torch.equal(flipped, x.flip(-1))
    assert torch.equal(D.random_hflip_batch(x, 0.0), x)


def test_random_resized_crop_params_in_bounds():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, left, h, w = TF.random_resized_crop_params(30, 40, generator=g)
        assert top >= 0 and left >= 0 and top + h <= 30 and left + w <= 40 and h > 0 and w > 0


# ---------------------------------------------------------------------------------------------------
# events


def test_events_to_frames_counts_and_positions():
    ev = {
        "t": np.array([0, 1, 2, 3]),
        "x": np.array([3, 3, 0, 9]),
        "y": np.array([5, 5, 1, 0]),
        "p": np.array([1, 1, 0, -1]),
    }
    fr = D.events_to_frames(ev, (8, 10), T=1)
    assert fr.shape == (1, 2, 8, 10) and fr.dtype == torch.float32
    assert fr[0, 1, 5, 3] == 2 and fr[0, 0, 1, 0] == 1 and fr[0, 0, 0, 9] == 1  # p = -1 is OFF
    assert fr.sum() == 4


@pytest.mark.parametrize("n", [1000, 1003])
def test_split_by_number_equal_counts(n):
    ev = _random_events(n)
    fr = D.events_to_frames(ev, (16, 20), T=4, split_by="number")
    per = fr.sum(dim=(1, 2, 3))
    assert per.sum() == n
    assert per[:3].tolist() == [n // 4] * 3 and per[3] == n - 3 * (n // 4)


def test_split_by_number_fewer_events_than_frames():
    fr = D.events_to_frames(_random_events(3), (16, 20), T=5)
    assert fr.sum(dim=(1, 2, 3)).tolist() == [0, 0, 0, 0, 3]


def test_split_by_time_equal_durations():
    ev = _random_events(500, t_max=1000)
    fr = D.events_to_frames(ev, (16, 20), T=4, split_by="time")
    t = ev["t"]
    dt = (t[-1] - t[0]) // 4
    edges = [t[0] + dt * i for i in range(4)] + [np.inf]
    want = [int(((t >= edges[i]) & (t < edges[i + 1])).sum()) for i in range(4)]
    assert fr.sum(dim=(1, 2, 3)).tolist() == want and sum(want) == 500


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_events_to_frames_matches_spikingjelly_reference(split_by):
    ev = _random_events(2000, seed=4)
    ours = D.events_to_frames(ev, (16, 20), T=6, split_by=split_by)
    ref = _spikingjelly_frames(ev, 16, 20, 6, split_by)
    np.testing.assert_array_equal(ours.numpy(), ref.astype(np.float32))


def test_events_structured_array_and_polarity_conventions():
    ev = _random_events(100)
    arr = np.zeros(100, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    for k in "txyp":
        arr[k] = ev[k]
    torch.testing.assert_close(D.events_to_frames(arr, (16, 20), 2), D.events_to_frames(ev, (16, 20), 2))
    signed = dict(ev, p=np.where(ev["p"] > 0, 1, -1))  # {-1, 1} polarity: -1 is the OFF channel
    torch.testing.assert_close(D.events_to_frames(signed, (16, 20), 2), D.events_to_frames(ev, (16, 20), 2))
    with pytest.raises(KeyError, match="missing"):
        D.events_to_frames({"t": ev["t"], "x": ev["x"]}, (16, 20), 2)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        D.events_to_frames(ev, (20, 16, 2), 2)


def test_resize_frames_modes():
    frames = torch.rand(2, 2, 8, 8) * 5
    mean2x2 = frames.reshape(2, 2, 4, 2, 4, 2).mean(dim=(3, 5))
    torch.testing.assert_close(D.resize_frames(frames, 4), mean2x2)  # bilinear, exact halving
    torch.testing.assert_close(D.resize_frames(frames, 4, mode="area"), mean2x2)
    aa = D.resize_frames(frames, 4, antialias=True)
    assert aa.shape == (2, 2, 4, 4) and not torch.allclose(aa, mean2x2)
    assert D.resize_frames(frames, (8, 8)) is frames


# ---------------------------------------------------------------------------------------------------
# event datasets and files


def _write_events_npz(path, ev):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **ev)


def _encode_cifar10dvs_aedat(path, ev):
    """Write an AER-DAT 2.0 file the way CIFAR10-DVS stores DVS128 events (inverse of the
    documented decoding: x' = 127 - y_raw, y' = 127 - x_raw, p' = 1 - pol_raw)."""
    y_raw = 127 - ev["x"].astype(np.uint32)
    x_raw = 127 - ev["y"].astype(np.uint32)
    pol = 1 - ev["p"].astype(np.uint32)
    addr = (y_raw << 8) | (x_raw << 1) | pol
    words = np.empty(2 * len(addr), dtype=">u4")
    words[0::2], words[1::2] = addr, ev["t"].astype(np.uint32)
    header = (
        b"#!AER-DAT2.0\r\n"
        b"# This is a raw AE data file created by saveAEData in jAER\r\n"
        b"#End Of ASCII Header\r\n"
    )
    path.write_bytes(header + words.tobytes())


def test_cifar10dvs_aedat_decoding(tmp_path):
    ev = _random_events(300, H=128, W=128, seed=2)
    path = tmp_path / "cifar10_cat_0.aedat"
    _encode_cifar10dvs_aedat(path, ev)
    back = D.read_cifar10dvs_aedat(path)
    for k in "txyp":
        np.testing.assert_array_equal(back[k], ev[k])
    raw = path.read_bytes()
    path.write_bytes(raw[:-3])
    with pytest.raises(D.DatasetFormatError, match="not a multiple of 8"):
        D.read_cifar10dvs_aedat(path)


def test_cifar10dvs_split_sizes_and_frames(tmp_path):
    root = tmp_path / "c10dvs"
    for c, cls in enumerate(("airplane", "automobile", "bird")):
        for i in range(11):
            ev = _random_events(200 + i, H=128, W=128, seed=100 * c + i)
            if i == 0 and c == 0:
                (root / "events_np" / cls).mkdir(parents=True, exist_ok=True)
                _encode_cifar10dvs_aedat(root / "events_np" / cls / f"cifar10_{cls}_{i}.aedat", ev)
            else:
                _write_events_npz(root / "events_np" / cls / f"cifar10_{cls}_{i}.npz", ev)
    train = D.CIFAR10DVS(root, T=4, split="train", frame_size=64)
    test = D.CIFAR10DVS(root, T=4, split="test", frame_size=64)
    assert len(train) == 3 * math.ceil(11 * 0.9) == 30 and len(test) == 3
    assert train.classes == ["airplane", "automobile", "bird"]
    # sorted file order: ..._0, _1, _10, _2, ... -> the last one (_9) is the test sample of each class
    assert [os.path.basename(p) for p, _ in test.samples] == [
        "cifar10_airplane_9.npz",
        "cifar10_automobile_9.npz",
        "cifar10_bird_9.npz",
    ]
    fr, y = train[0]  # the .aedat sample
    assert fr.shape == (4, 2, 64, 64) and y == 0
    full = D.CIFAR10DVS(root, T=4, split="all")
    fr128, _ = full[1]
    assert fr128.shape == (4, 2, 128, 128) and fr128.sum() == 201
    cfg = SimpleNamespace(input_size=(2, 64, 64), event_frames=True)
    assert D.CIFAR10DVS.from_data_config(cfg, root, T=2, split="test")[0][0].shape == (2, 2, 64, 64)


def test_dvs128_gesture_class_order_and_precomputed_frames(tmp_path):
    root = tmp_path / "gesture"
    for cls in ("0", "1", "2", "10"):
        _write_events_npz(root / "train" / cls / "user01_0.npz", _random_events(50, H=128, W=128))
    ds = D.DVS128Gesture(root, T=3, split="train")
    assert ds.classes == ["0", "1", "10", "2"]  # torchvision/spikingjelly string order
    assert ds[2][1] == 2 and "10" in ds.samples[2][0]
    frames = np.ones((3, 2, 128, 128), np.float32)
    np.savez(root / "train" / "0" / "user02_0.npz", frames=frames)
    ds = D.DVS128Gesture(root, T=3, split="train")
    assert ds[1][0].sum() == frames.sum()
    with pytest.raises(
        D.DatasetFormatError, match=r"precomputed frames of shape \(3, 2, 128, 128\), expected \[T=4"
    ):
        D.DVS128Gesture(root, T=4, split="train")[1]
    with pytest.raises(D.DatasetNotFoundError, match=r"expected a 'test' folder in .*DVS128 Gesture layout"):
        D.DVS128Gesture(root, T=3, split="test")


def test_event_folder_npy_and_errors(tmp_path):
    root = tmp_path / "ev"
    (root / "a").mkdir(parents=True)
    arr = np.zeros(10, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    arr["t"] = np.arange(10)
    np.save(root / "a" / "s0.npy", arr)
    ds = D.EventFrameFolder(root, T=2, sensor_size=(4, 4))
    fr, y = ds[0]
    assert fr.shape == (2, 2, 4, 4) and fr.sum() == 10 and y == 0
    np.savez(root / "a" / "s1.npz", t=np.arange(3), x=np.zeros(3))
    ds = D.EventFrameFolder(root, T=2, sensor_size=(4, 4))
    with pytest.raises(D.DatasetFormatError, match=r"s1.npz: missing array\(s\) \['y', 'p'\]"):
        ds[1]
    with pytest.raises(D.DatasetNotFoundError, match=r"nowhere does not exist .*root/<class>/<sample>.npz"):
        D.EventFrameFolder(tmp_path / "nowhere", T=2)
    with pytest.raises(D.DatasetNotFoundError, match="CIFAR10-DVS layout"):
        D.CIFAR10DVS(tmp_path / "nowhere", T=2)


def test_data_package_does_not_import_models():
    src = os.path.dirname(D.__file__)
    for name in sorted(os.listdir(src)):
        if name.endswith(".py"):
            with open(os.path.join(src, name)) as f:
                text = f.read()
            assert "from ..models" not in text and "tp_spikformer.models" not in text.replace(
                "``tp_spikformer.models``", ""
            ), name
