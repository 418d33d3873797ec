"""Datasets and transforms without torchvision (torch, numpy; Pillow only to decode/resize PIL images).

Shapes: image datasets return ``[C, H, W]`` float tensors (the models repeat a static image over T
themselves); event datasets return ``[T, 2, H, W]`` count frames. Labels are ints.

* Transforms: :mod:`.functional` (resize, center_crop, to_tensor, normalize, to_channels, ...),
  :mod:`.transforms` (callable classes, batch augmentation), :mod:`.presets`
  (:func:`build_eval_transform` / :func:`build_train_transform` from a model's ``DataConfig``).
* Images: :class:`ImageFolder`; in memory, batched: :class:`FashionMNIST`, :class:`MNIST`,
  :class:`CIFAR10`, :class:`CIFAR100` (all :class:`InMemoryImages`), ``.npz`` slices.
* Events: :func:`events_to_frames`, :func:`resize_frames`, :class:`CIFAR10DVS`,
  :class:`DVS128Gesture`, :class:`EventFrameFolder`.
* Synthetic scenes: :func:`render_background` (:mod:`.textures`), :class:`FashionObjects`,
  :class:`SceneConfig` / :func:`generate_scene` / :class:`SceneDataset` (:mod:`.scenes`),
  :func:`make_scenes` (:mod:`.scene_writers`: ADE20K, COCO and image-folder layouts on disk).
* Dense prediction: :class:`ADE20KDataset`, :class:`MaskFolderDataset` (:mod:`.segmentation`, items
  ``(image, label, stem)``); :class:`CocoDetection`, :func:`letterbox`, :func:`collate_detection`
  (:mod:`.coco`); COCO RLE in :mod:`.coco_rle`.
* Event tracking: :class:`EventSimulator` (ESIM-style, :mod:`.esim`); :class:`TrackingDataset` /
  :class:`TrackingSequence` (FE108, VisEvent, FELT layouts, :mod:`.tracking`); AEDAT 4 files
  (:func:`read_aedat4` with the optional ``aedat`` package, :func:`write_aedat4`); representations and
  crops (:func:`window_count_frames`, :class:`GTPEncoder`, :func:`gtp_frames`, :func:`crop_around`,
  :mod:`.event_repr`); box text files (:func:`read_box_file`, :func:`write_box_file`); the synthetic
  tracking set (:func:`make_tracking_dataset`, :mod:`.tracking_synth`).

This package never imports ``tp_spikformer.models``: configurations are read by duck typing.
"""

from ._config import DataSpec, data_spec
from .aedat4 import read_aedat4, write_aedat4
from .box_text import read_box_file, write_box_file
from .catalog import load_dataset, shipped_path, synthetic_dataset
from .cifar import CIFAR10, CIFAR10_CLASSES, CIFAR100
from .coco import (
    CocoDetection,
    DetectionTrainTransform,
    LetterboxInfo,
    coco_results,
    collate_detection,
    letterbox,
    unletterbox_boxes,
)
from .coco_rle import rle_decode, rle_encode
from .errors import DatasetFormatError, DatasetNotFoundError
from .esim import EVENT_DTYPE, EventSimulator
from .event_datasets import CIFAR10DVS, DVS128Gesture, EventFrameFolder, per_class_split
from .event_io import load_event_sample, read_cifar10dvs_aedat
from .event_repr import CropTransform, GTPEncoder, crop_around, gtp_frames, jitter_box, window_count_frames
from .events import events_to_frames, frame_index, resize_frames
from .fashion_objects import FashionObjects
from .functional import center_crop, hflip, normalize, resize, to_channels, to_tensor
from .idx import find_idx_file, read_idx, write_idx
from .image_folder import IMG_EXTENSIONS, ImageFolder, pil_loader
from .in_memory import InMemoryImages, load_npz_slice, save_npz_slice
from .mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_ROOT,
    FASHION_MNIST_STD,
    MNIST,
    MNIST_MEAN,
    MNIST_STD,
    FashionMNIST,
    read_idx_split,
)
from .presets import build_eval_transform, build_train_transform, eval_resize_size
from .scene_writers import class_folder_names, make_scenes
from .scenes import SEMANTIC_CLASSES, Scene, SceneConfig, SceneDataset, SceneObject, generate_scene
from .segmentation import (
    ADE20KDataset,
    MaskFolderDataset,
    SegmentationEvalTransform,
    SegmentationTrainTransform,
)
from .textures import BACKGROUND_KINDS, render_background
from .tracking import TrackingDataset, TrackingSequence, write_tracking_sequence
from .tracking_synth import TrackingSynthConfig, generate_sequence, make_tracking_dataset
from .transforms import (
    BatchAugment,
    CenterCrop,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ResizeFrames,
    ToChannels,
    ToTensor,
    random_crop_batch,
    random_hflip_batch,
)

__all__ = [
    "ADE20KDataset",
    "BACKGROUND_KINDS",
    "CocoDetection",
    "DetectionTrainTransform",
    "FashionObjects",
    "LetterboxInfo",
    "MaskFolderDataset",
    "SEMANTIC_CLASSES",
    "Scene",
    "SceneConfig",
    "SceneDataset",
    "SceneObject",
    "SegmentationEvalTransform",
    "SegmentationTrainTransform",
    "class_folder_names",
    "coco_results",
    "collate_detection",
    "generate_scene",
    "letterbox",
    "make_scenes",
    "render_background",
    "rle_decode",
    "rle_encode",
    "unletterbox_boxes",
    "load_dataset",
    "shipped_path",
    "synthetic_dataset",
    "BatchAugment",
    "CIFAR10",
    "CIFAR100",
    "CIFAR10DVS",
    "CIFAR10_CLASSES",
    "CenterCrop",
    "Compose",
    "CropTransform",
    "DVS128Gesture",
    "DataSpec",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "EVENT_DTYPE",
    "EventFrameFolder",
    "EventSimulator",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_ROOT",
    "FASHION_MNIST_STD",
    "FashionMNIST",
    "GTPEncoder",
    "IMG_EXTENSIONS",
    "ImageFolder",
    "InMemoryImages",
    "MNIST",
    "MNIST_MEAN",
    "MNIST_STD",
    "Normalize",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "ResizeFrames",
    "ToChannels",
    "ToTensor",
    "TrackingDataset",
    "TrackingSequence",
    "TrackingSynthConfig",
    "build_eval_transform",
    "build_train_transform",
    "center_crop",
    "crop_around",
    "data_spec",
    "eval_resize_size",
    "events_to_frames",
    "find_idx_file",
    "frame_index",
    "generate_sequence",
    "gtp_frames",
    "hflip",
    "jitter_box",
    "load_event_sample",
    "load_npz_slice",
    "make_tracking_dataset",
    "normalize",
    "per_class_split",
    "pil_loader",
    "random_crop_batch",
    "random_hflip_batch",
    "read_aedat4",
    "read_box_file",
    "read_cifar10dvs_aedat",
    "read_idx",
    "read_idx_split",
    "resize",
    "resize_frames",
    "save_npz_slice",
    "to_channels",
    "to_tensor",
    "window_count_frames",
    "write_aedat4",
    "write_box_file",
    "write_idx",
    "write_tracking_sequence",
]
