"""Segmentation readers (ADE20K layout, mask folders) and their joint transforms, on files made here."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tp_spikformer.data import ADE20KDataset, DatasetFormatError, DatasetNotFoundError, MaskFolderDataset
from tp_spikformer.data.segmentation import (
    SegmentationEvalTransform,
    SegmentationTrainTransform,
    hflip_pair,
    random_crop,
    random_hflip,
    random_resize,
    reduce_zero_label,
    resize_keep_ratio,
)


def write_pair(image_dir, mask_dir, stem, h=6, w=8, label=None, image_ext=".png", mask_mode="L"):
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    rgb = (np.arange(h * w * 3).reshape(h, w, 3) % 256).astype(np.uint8)
    Image.fromarray(rgb).save(image_dir / f"{stem}{image_ext}")
    if label is None:
        label = (np.arange(h * w).reshape(h, w) % 4).astype(np.uint8)
    mask = Image.fromarray(label)
    if mask_mode == "P":
        mask = mask.convert("P")
        mask.putpalette([v for k in range(256) for v in (k, 255 - k, 0)])
    elif mask_mode == "RGB":
        mask = mask.convert("RGB")
    mask.save(mask_dir / f"{stem}.png")
    return rgb, label


def ade_root(tmp_path, split="validation", stems=("a", "b")):
    root = tmp_path / "ade"
    out = {}
    for k, stem in enumerate(stems):
        out[stem] = write_pair(root / "images" / split, root / "annotations" / split, stem, h=6 + k, w=8)
    return root, out


def test_ade20k_items_are_image_label_stem(tmp_path):
    root, pairs = ade_root(tmp_path)
    ds = ADE20KDataset(root, "val")  # alias of "validation"
    assert len(ds) == 2 and ds.stems == ["a", "b"] and ds.classes is None
    image, label, stem = ds[1]
    rgb, mask = pairs["b"]
    assert stem == "b" and image.shape == (3, 7, 8) and image.dtype == torch.float32
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy() * 255, rgb, atol=1e-3)
    assert label.dtype == torch.int64
    np.testing.assert_array_equal(label.numpy(), mask)


def test_reduce_zero_label_hand_example(tmp_path):
    label = np.array([[0, 1, 2], [150, 255, 3]], np.uint8)
    root = tmp_path / "ade"
    write_pair(root / "images/training", root / "annotations/training", "x", 2, 3, label)
    (root / "classes.json").write_text(json.dumps({"classes": ["other", "wall", "sky"]}))
    plain = ADE20KDataset(root, "training")
    reduced = ADE20KDataset(root, "training", reduce_zero_label=True)
    np.testing.assert_array_equal(plain[0][1].numpy(), label)
    np.testing.assert_array_equal(reduced[0][1].numpy(), [[255, 0, 1], [149, 255, 2]])
    assert plain.classes == ["other", "wall", "sky"] and reduced.classes == ["wall", "sky"]
    other = reduce_zero_label(torch.tensor([0, 1, 255]), ignore_index=-1)
    assert other.tolist() == [-1, 0, -1]


def test_mask_folder_pairs_by_stem_and_reads_palette_masks(tmp_path):
    label = np.array([[0, 3], [7, 1]], np.uint8)
    write_pair(tmp_path / "img", tmp_path / "lbl", "p1", 2, 2, label, image_ext=".jpg", mask_mode="P")
    write_pair(tmp_path / "img", tmp_path / "lbl", "p0", 2, 2, label, image_ext=".png")
    ds = MaskFolderDataset(tmp_path / "img", tmp_path / "lbl")
    assert ds.stems == ["p0", "p1"]
    for k in range(2):
        np.testing.assert_array_equal(ds[k][1].numpy(), label)  # mode P: palette indices


def test_dataset_transform_receives_the_pair(tmp_path):
    root, _ = ade_root(tmp_path)
    ds = ADE20KDataset(root, transform=lambda img, lbl: (img[:, :2, :3], lbl[:2, :3]))
    image, label, _ = ds[0]
    assert image.shape == (3, 2, 3) and label.shape == (2, 3)


def test_segmentation_reader_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist.*ADE20K layout"):
        ADE20KDataset(tmp_path / "nothing")
    root = tmp_path / "ade"
    root.mkdir()
    with pytest.raises(DatasetNotFoundError, match="image folder 'validation'.*ADE20K layout"):
        ADE20KDataset(root)
    (root / "images/validation").mkdir(parents=True)
    (root / "annotations/validation").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no .* images in .*validation"):
        ADE20KDataset(root)  # empty split
    with pytest.raises(ValueError, match="unknown split 'testing'"):
        ADE20KDataset(root, "testing")

    img, lbl = root / "images/validation", root / "annotations/validation"
    write_pair(img, lbl, "ok")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img / "lonely.jpg")
    with pytest.raises(DatasetNotFoundError, match="1 image\\(s\\) without a mask in .*annotations.*lonely"):
        ADE20KDataset(root)
    (img / "lonely.jpg").unlink()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(lbl / "orphan.png")
    with pytest.raises(DatasetNotFoundError, match="mask\\(s\\) without a image in .*images.*orphan"):
        ADE20KDataset(root)
    (lbl / "orphan.png").unlink()

    write_pair(img, lbl, "small", label=np.zeros((3, 3), np.uint8))  # 6x8 image, 3x3 mask
    with pytest.raises(DatasetFormatError, match="small.png: mask is 3x3 but its image small.png is 6x8"):
        ADE20KDataset(root)[1]
    write_pair(img, lbl, "small", mask_mode="RGB")
    with pytest.raises(DatasetFormatError, match="mode 'RGB'.*single-channel"):
        ADE20KDataset(root)[1]
    (lbl / "small.png").write_bytes(b"not a png")
    with pytest.raises(DatasetFormatError, match="cannot decode mask"):
        ADE20KDataset(root)[1]


# ---- transforms -----------------------------------------------------------------------------------


def pair(h=6, w=8):
    image = torch.arange(3 * h * w, dtype=torch.float32).reshape(3, h, w) / (3 * h * w)
    label = torch.arange(h * w).reshape(h, w) % 5
    return image, label


def test_random_crop_pads_label_with_ignore_index():
    image, label = pair(4, 5)
    g = torch.Generator().manual_seed(0)
    img, lbl = random_crop(image, label, (6, 7), ignore_index=255, generator=g)
    assert img.shape == (3, 6, 7) and lbl.shape == (6, 7)
    assert torch.equal(lbl[:4, :5], label) and (lbl[4:] == 255).all() and (lbl[:, 5:] == 255).all()
    assert (img[:, 4:] == 0).all() and torch.equal(img[:, :4, :5], image)


def test_random_crop_is_a_window_of_the_pair():
    image, label = pair(10, 12)
    g = torch.Generator().manual_seed(1)
    img, lbl = random_crop(image, label, 4, generator=g)
    hits = [
        (t, left)
        for t in range(7)
        for left in range(9)
        if torch.equal(label[t : t + 4, left : left + 4], lbl)
        and torch.equal(image[:, t : t + 4, left : left + 4], img)
    ]
    assert hits


def test_cat_max_ratio_avoids_single_class_crops():
    image = torch.zeros(3, 20, 20)
    label = torch.zeros(20, 20, dtype=torch.int64)
    label[:, 14:] = 1  # only crops reaching column 14+ hold two classes
    hits = 0
    for seed in range(10):
        _, lbl = random_crop(
            image, label, 8, cat_max_ratio=0.9, generator=torch.Generator().manual_seed(seed)
        )
        hits += int(lbl.unique().numel() == 2)
    assert hits >= 8  # without the rule only 6 of the 13 crop positions hold both classes


def test_random_resize_and_flip_keep_the_pair_aligned():
    image, label = pair(6, 8)
    g = torch.Generator().manual_seed(0)
    img, lbl = random_resize(image, label, (2.0, 2.0), generator=g)
    assert img.shape == (3, 12, 16) and lbl.shape == (12, 16)
    assert torch.equal(lbl[::2, ::2], label)  # nearest neighbour: no new label values, exact upsampling
    _, lbl2 = random_resize(image, label, (1.0, 1.0), scale=(32, 12), generator=g)
    assert lbl2.shape == (12, 16)  # keep ratio: short side 6 -> 12 limits
    fi, fl = hflip_pair(image, label)
    assert torch.equal(fl[:, 0], label[:, -1]) and torch.equal(fi[:, :, 0], image[:, :, -1])
    flips = [
        torch.equal(random_hflip(image, label, 0.5, torch.Generator().manual_seed(s))[1], fl)
        for s in range(10)
    ]
    assert any(flips) and not all(flips)


def test_train_and_eval_transforms():
    image, label = pair(20, 30)
    t1, t2 = SegmentationTrainTransform(16, seed=3), SegmentationTrainTransform(16, seed=3)
    a, b = t1(image, label), t2(image, label)
    assert a[0].shape == (3, 16, 16) and a[1].shape == (16, 16)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    img, lbl = SegmentationEvalTransform(scale=(60, 40))(image, label)
    assert img.shape == (3, 40, 60) and lbl is label  # label kept at the original size
    assert resize_keep_ratio(image, (100, 10)).shape == (3, 10, 15)
    with pytest.raises(ValueError, match="same size"):
        random_crop(image, label[:5], 4)
