"""Synthetic scenes: backgrounds, Fashion-MNIST sprites, the scene generator and its on-disk writers."""

import json
import os

import numpy as np
import pytest
import torch

from tp_spikformer.data import (
    BACKGROUND_KINDS,
    ADE20KDataset,
    CocoDetection,
    DatasetNotFoundError,
    FashionObjects,
    ImageFolder,
    SceneConfig,
    SceneDataset,
    class_folder_names,
    generate_scene,
    make_scenes,
    render_background,
    rle_decode,
    rle_encode,
)
from tp_spikformer.data.coco_rle import counts_to_string, mask_bbox, mask_to_counts, string_to_counts
from tp_spikformer.data.fashion_objects import fill_small_holes


@pytest.fixture(scope="module")
def train_objects():
    return FashionObjects("train", source="shipped")


@pytest.fixture(scope="module")
def test_objects():
    return FashionObjects("test", source="shipped")


def square_objects(split="train", n=10):
    """Items that are full 28x28 squares (class k for item k): sprites cover their whole box."""
    return FashionObjects.from_arrays(np.full((n, 28, 28), 200, np.uint8), np.arange(n) % 10, split)


# ---- backgrounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKGROUND_KINDS)
def test_background_kinds_are_deterministic_smooth_rgb(kind):
    a = render_background(48, 80, np.random.default_rng(3), kind)
    b = render_background(48, 80, np.random.default_rng(3), kind)
    c = render_background(48, 80, np.random.default_rng(4), kind)
    assert a.shape == (48, 80, 3) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Large smooth regions: neighbouring pixels differ little on average.
    assert np.abs(np.diff(a, axis=1)).mean() < 0.05 and np.abs(np.diff(a, axis=0)).mean() < 0.05


def test_background_random_kind_large_canvas_and_errors():
    kinds = set()
    for s in range(40):
        rng = np.random.default_rng(s)
        kinds.add(BACKGROUND_KINDS[int(np.random.default_rng(s).integers(len(BACKGROUND_KINDS)))])
        img = render_background(16, 16, rng)
        assert img.shape == (16, 16, 3)
    assert kinds == set(BACKGROUND_KINDS)
    big = render_background(300, 500, np.random.default_rng(0), "clutter", feature_size=64)
    assert big.shape == (300, 500, 3)
    with pytest.raises(ValueError, match="unknown background kind 'sky'.*noise"):
        render_background(8, 8, np.random.default_rng(0), "sky")
    with pytest.raises(ValueError, match="positive"):
        render_background(0, 8, np.random.default_rng(0))


# ---- Fashion-MNIST sprites -----------------------------------------------------------------------


def test_fill_small_holes_keeps_large_holes_and_the_outside():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    mask[2, 2] = False  # a 1-pixel hole: filled
    mask[4:7, 4:7] = False  # a 9-pixel hole: kept with max_hole = 4
    out = fill_small_holes(mask, max_hole=4)
    expected = mask.copy()
    expected[2, 2] = True
    np.testing.assert_array_equal(out, expected)
    assert fill_small_holes(mask, max_hole=9)[4:7, 4:7].all()


def test_shipped_halves_are_disjoint(train_objects, test_objects):
    from tp_spikformer.data.catalog import SHIPPED_SLICE, shipped_path
    from tp_spikformer.data.in_memory import load_npz_slice

    raw = load_npz_slice(shipped_path(SHIPPED_SLICE))["images"].reshape(-1, 28, 28)
    assert train_objects.num_items == test_objects.num_items == 1000
    np.testing.assert_array_equal(train_objects.images, raw[:1000])
    np.testing.assert_array_equal(test_objects.images, raw[1000:])
    assert train_objects.split == "train" and test_objects.split == "test"
    assert len(FashionObjects.CLASSES) == 10 and FashionObjects.CLASSES[0] == "T-shirt/top"


def test_sprite_alpha_is_crisp_and_rgb_is_the_tinted_shading(train_objects):
    tint = (0.9, 0.2, 0.4)
    rgba = train_objects.sprite(5, (40, 30), tint)
    assert rgba.shape == (40, 30, 4) and rgba.dtype == np.float32
    alpha = rgba[..., 3]
    assert set(np.unique(alpha)) == {0.0, 1.0}
    assert (rgba[..., :3][alpha == 0] == 0).all()
    inside = rgba[..., :3][alpha == 1]
    assert (inside <= np.asarray(tint) + 1e-6).all() and (inside >= 0.3 * np.asarray(tint) - 1e-6).all()
    square = train_objects.sprite(5, 40, tint)[..., 3]
    mirrored = [
        np.array_equal(train_objects.sprite(5, 40, tint, np.random.default_rng(s))[..., 3], square[:, ::-1])
        for s in range(8)
    ]
    assert any(mirrored) and not all(mirrored)  # rng mirrors about half of the sprites
    assert not np.array_equal(square, square[:, ::-1])


def test_fashion_objects_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError) as exc:
        FashionObjects("train", root=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg and "shipped" in msg
    with pytest.raises(ValueError, match="unknown split 'val'"):
        FashionObjects("val", source="shipped")
    with pytest.raises(ValueError, match="unknown source 'web'"):
        FashionObjects("train", source="web")
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        FashionObjects.from_arrays(np.zeros((2, 28, 28), np.uint8), np.array([0, 10]))


# ---- scenes ---------------------------------------------------------------------------------------


def test_scenes_are_deterministic_per_seed_and_index(train_objects):
    cfg = SceneConfig(height=64, width=64, seed=7)
    a, b = generate_scene(cfg, 3, train_objects), generate_scene(cfg, 3, train_objects)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.semantic, b.semantic)
    assert [o.bbox for o in a.instances] == [o.bbox for o in b.instances]
    other_seed = generate_scene(SceneConfig(height=64, width=64, seed=8), 3, train_objects)
    other_index = generate_scene(cfg, 4, train_objects)
    assert not np.array_equal(a.image, other_seed.image)
    assert not np.array_equal(a.image, other_index.image)


def test_scene_annotations_are_consistent_with_the_pixels(train_objects):
    cfg = SceneConfig(height=72, width=120, min_objects=2, max_objects=6, seed=1)
    lo, hi = cfg.object_side_range()
    assert (lo, hi) == (round(0.2 * 72), round(0.7 * 72))  # the shorter side sets the scale
    overlaps = 0
    for i in range(12):
        s = generate_scene(cfg, i, train_objects)
        assert s.image.shape == (72, 120, 3) and s.image.dtype == np.uint8
        assert s.semantic.shape == (72, 120) and s.semantic.dtype == np.uint8
        union = np.zeros((72, 120), np.int64)
        for obj in s.instances:
            x, y, side, side2 = obj.placement
            assert lo <= side == side2 <= hi
            assert x >= 0 and x + side <= 120 and y >= 0 and y + side <= 72
            assert obj.mask.dtype == bool and obj.area == int(obj.mask.sum()) >= cfg.min_visible_area
            assert obj.bbox == mask_bbox(obj.mask)  # box of the visible part
            bx, by, bw, bh = obj.bbox
            assert x <= bx and bx + bw <= x + side and y <= by and by + bh <= y + side
            assert (s.semantic[obj.mask] == obj.category + 1).all()
            union += obj.mask
        assert union.max() <= 1  # visible masks never overlap
        np.testing.assert_array_equal(s.semantic > 0, union == 1)
        boxes = [o.placement for o in s.instances]
        overlaps += sum(
            max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
            * max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
            > 0
            for k, a in enumerate(boxes)
            for b in boxes[k + 1 :]
        )
    assert overlaps > 0  # the check above covered occluded objects


def test_occluded_objects_are_cut_and_slivers_removed():
    objects = square_objects()
    cfg = SceneConfig(height=40, width=40, min_objects=5, max_objects=5, scale=(0.8, 1.0), seed=0)
    drawn, kept = 0, 0
    for i in range(10):
        s = generate_scene(cfg, i, objects)
        drawn += 5
        kept += len(s.instances)
        for obj in s.instances:
            side = obj.placement[2]
            assert obj.area >= max(cfg.min_visible_area, cfg.min_visible_fraction * side * side)
        top = s.instances[-1]  # never occluded: its mask is its whole square
        x, y, side, _ = top.placement
        assert top.area == side * side and top.mask[y : y + side, x : x + side].all()
        # Removed objects leave no trace: every object pixel belongs to a kept instance.
        assert ((s.semantic > 0) == np.any([o.mask for o in s.instances], axis=0)).all()
    assert kept < drawn  # big overlapping squares: some objects were hidden and removed


def test_non_square_scene_dataset_modes(train_objects):
    cfg = SceneConfig(height=48, width=80, seed=2)
    seg = SceneDataset(cfg, 5, train_objects)
    image, label = seg[1]
    assert (
        image.shape == (3, 48, 80) and image.dtype == torch.float32 and image.min() >= 0 and image.max() <= 1
    )
    assert label.shape == (48, 80) and label.dtype == torch.int64 and int(label.max()) <= 10
    scene = seg.scene(1)
    np.testing.assert_array_equal(label.numpy(), scene.semantic)
    _, target = SceneDataset(cfg, 5, train_objects, mode="detection")[1]
    np.testing.assert_array_equal(target["boxes"].numpy(), scene.boxes_xyxy())
    np.testing.assert_array_equal(target["labels"].numpy(), scene.categories())
    assert target["orig_size"] == (48, 80)
    _, _, instances = SceneDataset(cfg, 5, train_objects, mode="scene")[1]
    assert len(instances) == len(scene.instances)
    with pytest.raises(IndexError):
        seg[5]
    with pytest.raises(ValueError, match="unknown mode"):
        SceneDataset(cfg, 5, train_objects, mode="panoptic")


def test_scene_config_and_split_errors(train_objects):
    with pytest.raises(ValueError, match="min_objects <= max_objects"):
        SceneConfig(min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="scale"):
        SceneConfig(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="unknown split"):
        SceneConfig(split="val")
    with pytest.raises(ValueError, match="backgrounds"):
        SceneConfig(backgrounds=("sky",))
    with pytest.raises(ValueError, match="train scenes must use train items"):
        generate_scene(SceneConfig(split="test"), 0, train_objects)


# ---- COCO RLE -------------------------------------------------------------------------------------


def test_rle_hand_example_and_round_trip():
    mask = np.array([[1, 0, 0], [1, 1, 0]], bool)  # column-major: 1 1 0 1 0 0
    assert mask_to_counts(mask) == [0, 2, 1, 1, 2]
    assert mask_to_counts(~mask) == [2, 1, 1, 2]
    rng = np.random.default_rng(0)
    cases = [
        np.zeros((5, 7), bool),
        np.ones((5, 7), bool),
        rng.random((31, 17)) < 0.3,
        rng.random((4, 90)) < 0.9,
    ]
    for m in cases:
        for compressed in (True, False):
            rle = rle_encode(m, compressed)
            assert rle["size"] == list(m.shape)
            np.testing.assert_array_equal(rle_decode(rle), m)
    big = [3, 1000, 2, 100000, 7, 1]  # multi-group and negative delta-coded counts
    assert string_to_counts(counts_to_string(big)) == big


def test_rle_matches_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask", reason="pycocotools not installed")
    rng = np.random.default_rng(1)
    for _ in range(20):
        m = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        ref = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        assert rle_encode(m)["counts"] == ref["counts"].decode("ascii")
        np.testing.assert_array_equal(rle_decode({"size": ref["size"], "counts": ref["counts"]}), m)


# ---- writers -> readers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes")
    result = make_scenes(out, train=4, val=3, height=40, width=56, max_objects=3, seed=5, source="shipped")
    return out, result


def test_make_scenes_layout_and_summary(written):
    out, result = written
    assert result["ade20k"]["training"] == 4 and result["ade20k"]["validation"] == 3
    assert result["coco"]["train"]["images"] == 4 and result["coco"]["val"]["images"] == 3
    assert result["classification"]["train"] == 4 and result["classification"]["val"] == 3
    for rel in (
        "ade20k/images/training/scene_000000.jpg",
        "ade20k/annotations/validation/scene_000002.png",
        "ade20k/classes.json",
        "coco/annotations/instances_train.json",
        "coco/val/scene_000002.jpg",
    ):
        assert os.path.isfile(out / rel), rel
    with open(out / "scenes.json") as f:
        assert json.load(f)["source"] == "shipped"
    assert class_folder_names()[0] == "0_T-shirt_top" and sorted(class_folder_names()) == class_folder_names()


def test_ade20k_round_trip(written, test_objects):
    out, _ = written
    ds = ADE20KDataset(out / "ade20k", "validation")
    assert len(ds) == 3 and ds.classes[0] == "background" and len(ds.classes) == 11
    image, label, stem = ds[2]
    scene = generate_scene(
        SceneConfig(height=40, width=56, max_objects=3, seed=5, split="test"), 2, test_objects
    )
    assert stem == "scene_000002"
    np.testing.assert_array_equal(label.numpy(), scene.semantic)  # PNG: exact
    jpeg_error = (image * 255 - torch.from_numpy(scene.image).permute(2, 0, 1).float()).abs().mean()
    assert float(jpeg_error) < 6.0


def test_coco_round_trip_boxes_and_masks(written, train_objects):
    out, _ = written
    ds = CocoDetection(out / "coco", "train")
    cfg = SceneConfig(height=40, width=56, max_objects=3, seed=5, split="train")
    assert ds.classes == list(FashionObjects.CLASSES) and ds.label_to_cat_id == list(range(1, 11))
    for i in range(len(ds)):
        target = ds.target(i)
        scene = generate_scene(cfg, i, train_objects)
        np.testing.assert_array_equal(target["boxes"].numpy(), scene.boxes_xyxy())
        np.testing.assert_array_equal(target["labels"].numpy(), scene.categories())
    with open(out / "coco/annotations/instances_train.json") as f:
        doc = json.load(f)
    ann = doc["annotations"][0]
    assert ann["iscrowd"] == 0 and ann["area"] == float(rle_decode(ann["segmentation"]).sum())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_coco_masks_with_pycocotools(written, train_objects):
    coco_api = pytest.importorskip("pycocotools.coco", reason="pycocotools not installed")
    out, _ = written
    coco = coco_api.COCO(str(out / "coco/annotations/instances_train.json"))
    cfg = SceneConfig(height=40, width=56, max_objects=3, seed=5, split="train")
    for image_id in coco.getImgIds():
        scene = generate_scene(cfg, image_id - 1, train_objects)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(scene.instances)
        for ann, obj in zip(anns, scene.instances):
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), obj.mask)


def test_classification_split_reads_as_image_folder(written, test_objects):
    out, _ = written
    ds = ImageFolder(out / "classification" / "val")
    assert ds.classes == class_folder_names()[:3]  # scene i shows class i % 10
    cfg = SceneConfig(height=40, width=56, min_objects=1, max_objects=1, seed=5, split="test")
    by_stem = {os.path.splitext(os.path.basename(p))[0]: ds.classes[label] for p, label in ds.samples}
    for i in range(3):
        scene = generate_scene(cfg, i, test_objects, category=i)
        assert len(scene.instances) == 1 and scene.instances[0].category == i
        assert by_stem[f"scene_{i:06d}"] == class_folder_names()[i]
        image, _ = ds[
            ds.samples.index(
                (str(out / "classification/val" / class_folder_names()[i] / f"scene_{i:06d}.png"), i)
            )
        ]
        np.testing.assert_array_equal(
            (image * 255).round().byte().permute(1, 2, 0).numpy(), scene.image
        )  # PNG


def test_make_scenes_refuses_to_overwrite_and_bad_formats(written, tmp_path):
    out, _ = written
    with pytest.raises(FileExistsError, match="overwrite"):
        make_scenes(out, formats=("ade20k",), train=1, val=0, height=32, width=32, source="shipped")
    with pytest.raises(ValueError, match="unknown format"):
        make_scenes(tmp_path / "x", formats=("voc",), source="shipped")
    result = make_scenes(
        tmp_path / "y", formats=("ade20k",), train=2, val=0, height=32, width=32, source="shipped"
    )
    again = make_scenes(
        tmp_path / "y",
        formats=("ade20k",),
        train=1,
        val=0,
        height=32,
        width=32,
        source="shipped",
        overwrite=True,
    )
    assert result["ade20k"]["training"] == 2 and again["ade20k"]["training"] == 1
    assert len(os.listdir(tmp_path / "y/ade20k/images/training")) == 1
