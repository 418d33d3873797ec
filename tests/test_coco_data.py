"""COCO-format reader, letterbox, batching and box transforms, on small files made here."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tp_spikformer.data import (
    CocoDetection,
    DatasetFormatError,
    DatasetNotFoundError,
    coco_results,
    collate_detection,
    letterbox,
    make_scenes,
    unletterbox_boxes,
)
from tp_spikformer.data.coco import (
    DetectionTrainTransform,
    hflip_detection,
    random_hflip_detection,
    random_resize_detection,
)


def coco_doc():
    return {
        "images": [
            {"id": 10, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 11, "file_name": "b.png", "height": 16, "width": 16},
        ],
        "categories": [
            {"id": 90, "name": "toothbrush"},
            {"id": 3, "name": "car"},
            {"id": 7, "name": "train"},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [2, 3, 10, 5], "area": 50, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 90, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 1},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0, 3], "area": 0, "iscrowd": 0},
            {"id": 4, "image_id": 11, "category_id": 3, "bbox": [1.5, 2, 3, 4.5], "area": 13, "iscrowd": 0},
        ],
    }


def write_coco(root, doc=None, split="val"):
    doc = doc or coco_doc()
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    for im in doc["images"]:
        Image.fromarray(np.full((im.get("height", 8), im["width"], 3), 128, np.uint8)).save(
            root / split / im["file_name"]
        )
    return root


def test_reader_boxes_labels_and_category_mapping(tmp_path):
    ds = CocoDetection(write_coco(tmp_path / "c"), "val")
    assert ds.cat_ids == [3, 7, 90] and ds.classes == ["car", "train", "toothbrush"]
    assert ds.cat_id_to_label == {3: 0, 7: 1, 90: 2} and ds.label_to_cat_id == [3, 7, 90]
    assert len(ds) == 2 and ds.image_ids == [10, 11]
    image, target = ds[0]
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert target["boxes"].tolist() == [[2, 3, 12, 8]] and target["labels"].tolist() == [1]
    assert target["image_id"] == 10 and target["orig_size"] == (20, 30)
    assert ds.skipped_crowd == 1 and ds.skipped_degenerate == 1
    _, t2 = ds[1]
    assert t2["boxes"].tolist() == [[1.5, 2.0, 4.5, 6.5]] and t2["labels"].tolist() == [0]
    crowd = CocoDetection.from_files(
        tmp_path / "c/annotations/instances_val.json", tmp_path / "c/val", include_crowd=True
    )
    t = crowd.target(0)
    assert t["labels"].tolist() == [1, 2] and t["iscrowd"].tolist() == [0, 1]


def test_reader_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="COCO layout"):
        CocoDetection(tmp_path / "none")
    root = write_coco(tmp_path / "c")
    with pytest.raises(DatasetNotFoundError, match="instances_train.json"):
        CocoDetection(root, "train")
    (root / "annotations/instances_val.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not a readable JSON"):
        CocoDetection(root)

    def broken(change):
        doc = coco_doc()
        change(doc)
        return write_coco(tmp_path / f"b{len(list(tmp_path.iterdir()))}", doc)

    cases = [
        (lambda d: d.pop("categories"), DatasetFormatError, "missing list"),
        (lambda d: d["annotations"][0].update(category_id=5), DatasetFormatError, "unknown category_id 5"),
        (lambda d: d["annotations"][0].update(image_id=99), DatasetFormatError, "unknown image_id 99"),
        (lambda d: d["annotations"][0].update(bbox=[1, 1, -2, 3]), DatasetFormatError, "negative box size"),
        (
            lambda d: d["annotations"][0].update(bbox=[1, 1, 3]),
            DatasetFormatError,
            r"bbox must be \[x, y, w, h\]",
        ),
        (lambda d: d["images"][0].pop("height"), DatasetFormatError, r"lacks \['height'\]"),
        (lambda d: d["images"].append(dict(d["images"][0])), DatasetFormatError, "duplicate image ids"),
    ]
    for change, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            CocoDetection(broken(change))
    root = write_coco(tmp_path / "m")
    (root / "val/b.png").unlink()
    with pytest.raises(
        DatasetNotFoundError, match=r"1 image file\(s\) listed in instances_val.json \(b.png\)"
    ):
        CocoDetection(root)
    root = write_coco(tmp_path / "s")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(root / "val/a.png")
    with pytest.raises(DatasetFormatError, match="a.png: image is 5x5 but instances_val.json says 20x30"):
        CocoDetection(root)[0]


def test_letterbox_maps_boxes_and_back():
    image = torch.rand(3, 40, 80)
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0], [0.0, 0.0, 80.0, 40.0]])
    out, b, info = letterbox(image, boxes, size=(64, 64))
    assert out.shape == (3, 64, 64) and info.scale == (0.8, 0.8) and info.pad == (0, 0)
    assert torch.allclose(b, boxes * 0.8) and (out[:, 32:] == 0).all()  # padding below the 32-row image
    assert torch.allclose(unletterbox_boxes(b, info), boxes)
    out, b, info = letterbox(image, boxes, size=(64, 64), center=True, fill=0.5)
    assert info.pad == (0, 16) and (out[:, :16] == 0.5).all() and (out[:, 48:] == 0.5).all()
    assert torch.allclose(b, boxes * 0.8 + torch.tensor([0, 16, 0, 16]))
    assert torch.allclose(unletterbox_boxes(b, info), boxes)
    outside = unletterbox_boxes(torch.tensor([[-8.0, 0.0, 70.0, 70.0]]), info)
    assert outside.tolist() == [[0.0, 0.0, 80.0, 40.0]]  # clipped to the original image


def test_collate_two_sizes_with_padding_mask():
    a, b = torch.rand(3, 20, 30), torch.rand(3, 33, 10)
    images, targets, mask = collate_detection([(a, {"image_id": 1}), (b, {"image_id": 2})], size_divisor=32)
    assert images.shape == (2, 3, 64, 32) and mask.shape == (2, 64, 32)
    assert torch.equal(images[0, :, :20, :30], a) and torch.equal(images[1, :, :33, :10], b)
    assert (~mask[0, :20, :30]).all() and mask[0, 20:].all() and mask[0, :, 30:].all()
    assert int((~mask[1]).sum()) == 33 * 10 and (images[1, :, 33:] == 0).all()
    assert [t["size"] for t in targets] == [(20, 30), (33, 10)] and targets[1]["image_id"] == 2
    with pytest.raises(ValueError, match="at least one"):
        collate_detection([])


def test_flip_and_scale_jitter_follow_the_boxes():
    image = torch.zeros(1, 10, 20)
    image[:, 2:5, 3:9] = 1.0  # the box covers rows 2..4, columns 3..8
    boxes = torch.tensor([[3.0, 2.0, 9.0, 5.0]])
    flipped, fb = hflip_detection(image, boxes)
    x1, y1, x2, y2 = fb[0].int().tolist()
    assert (flipped[:, y1:y2, x1:x2] == 1).all() and flipped.sum() == image.sum()
    assert torch.equal(hflip_detection(*hflip_detection(image, boxes))[1], boxes)
    flips = [
        torch.equal(random_hflip_detection(image, boxes, 0.5, torch.Generator().manual_seed(s))[1], fb)
        for s in range(10)
    ]
    assert any(flips) and not all(flips)
    big, bb = random_resize_detection(image, boxes, (2.0, 2.0))
    assert big.shape == (1, 20, 40) and bb.tolist() == [[6.0, 4.0, 18.0, 10.0]]
    t = DetectionTrainTransform(seed=1)
    img, target = t(image, {"boxes": boxes, "labels": torch.tensor([0])})
    img2, target2 = DetectionTrainTransform(seed=1)(image, {"boxes": boxes, "labels": torch.tensor([0])})
    assert torch.equal(img, img2) and torch.equal(target["boxes"], target2["boxes"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2
def test_results_file_scored_by_pycocotools(tmp_path):
    pytest.importorskip("pycocotools", reason="pycocotools not installed")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    make_scenes(tmp_path, formats=("coco",), train=0, val=4, height=48, width=64, seed=2, source="shipped")
    ds = CocoDetection(tmp_path / "coco", "val")
    results = []
    for i in range(len(ds)):
        t = ds.target(i)
        scores = torch.ones(len(t["labels"]))
        results += coco_results(t["image_id"], t["boxes"], scores, t["labels"], ds.label_to_cat_id)
    assert set(results[0]) == {"image_id", "category_id", "bbox", "score"}
    (tmp_path / "detections.json").write_text(json.dumps(results))
    gt = COCO(str(tmp_path / "coco/annotations/instances_val.json"))
    ev = COCOeval(gt, gt.loadRes(str(tmp_path / "detections.json")), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # perfect boxes: mAP@[.5:.95] = 1
