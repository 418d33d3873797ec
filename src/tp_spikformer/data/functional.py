"""Image operations on PIL images and torch tensors (no torchvision).

Layout convention: PIL images and numpy arrays are HWC (or HW); torch tensors are CHW, or any
``[..., C, H, W]`` batch. Resizing and cropping a PIL image give a PIL image and follow torchvision's
PIL code path exactly (``Image.resize`` with the named filter, the same output-size and crop-offset
rules), so the official timm/torchvision evaluation preprocessing is reproduced pixel for pixel.
Resizing a tensor uses ``torch.nn.functional.interpolate`` with ``antialias=True`` for bilinear and
bicubic, torch's port of Pillow's filters (bicubic with a = -0.5): within one grey level of Pillow on
smooth images; on high-contrast detail bicubic differs by more, because Pillow rounds and clamps to
uint8 between its horizontal and vertical passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UsageError, UsageTypeError
from ._pillow import is_pil_image, require_pillow

# Pillow filter names accepted by resize(); tensors support the first three plus "area".
PIL_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")
TENSOR_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")

Size = int | Sequence[int]


def _pair(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise UsageError(f"size must be an int or (height, width), got {size}")
    return size  # type: ignore[return-value]


def image_size(img: Any) -> tuple[int, int]:
    """``(height, width)`` of a PIL image, an HWC/HW numpy array or a ``[..., H, W]`` tensor."""
    if is_pil_image(img):
        return img.height, img.width
    if isinstance(img, np.ndarray):
        return int(img.shape[0]), int(img.shape[1])
    if isinstance(img, torch.Tensor):
        if img.dim() < 2:
            raise UsageError(f"expected a [..., H, W] tensor, got shape {tuple(img.shape)}")
        return int(img.shape[-2]), int(img.shape[-1])
    raise UsageTypeError(f"expected a PIL image, numpy array or torch tensor, got {type(img).__name__}")


def resized_output_size(height: int, width: int, size: Size) -> tuple[int, int]:
    """Output ``(height, width)`` of :func:`resize`.

    An int resizes the shorter side to ``size`` and the longer one to ``int(size * long / short)``
    (torchvision's rule); a pair is the exact output size.
    """
    if isinstance(size, int) or (isinstance(size, Sequence) and len(size) == 1):
        s = size if isinstance(size, int) else int(size[0])
        if width <= height:
            return int(s * height / width), s
        return s, int(s * width / height)
    return _pair(size)


def _pil_filter(interpolation: str) -> Any:
    Image = require_pillow()
    name = interpolation.lower()
    if name not in PIL_INTERPOLATIONS:
        raise UsageError(
            f"unknown interpolation '{interpolation}'; valid for PIL images: {PIL_INTERPOLATIONS}"
        )
    return getattr(Image.Resampling, name.upper())


def resize(img: Any, size: Size, interpolation: str = "bilinear") -> Any:
    """Resize a PIL image or a ``[..., H, W]`` tensor (see :func:`resized_output_size` for ``size``).

    Returns the input unchanged when it already has the output size. uint8 tensors are resized in
    float and rounded back to uint8; float tensors are not clamped (bicubic may overshoot [0, 1]).
    """
    h, w = image_size(img)
    out_h, out_w = resized_output_size(h, w, size)
    if (out_h, out_w) == (h, w):
        return img
    if out_h <= 0 or out_w <= 0:
        raise UsageError(f"resize to {size} of a {h}x{w} image gives an empty image")
    if is_pil_image(img):
        return img.resize((out_w, out_h), _pil_filter(interpolation))
    if not isinstance(img, torch.Tensor):
        raise UsageTypeError(f"resize expects a PIL image or a torch tensor, got {type(img).__name__}")
    mode = interpolation.lower()
    if mode not in TENSOR_INTERPOLATIONS:
        raise UsageError(
            f"unknown interpolation '{interpolation}'; valid for tensors: {TENSOR_INTERPOLATIONS}"
        )
    lead = img.shape[:-2]
    x = img.reshape(-1, 1, h, w)
    is_uint8 = x.dtype == torch.uint8
    if not x.is_floating_point():
        x = x.float()
    if mode in ("bilinear", "bicubic"):
        y = F.interpolate(x, size=(out_h, out_w), mode=mode, align_corners=False, antialias=True)
    elif mode == "nearest":
        # Pillow's nearest rule (pixel centres), torch's "nearest-exact".
        y = F.interpolate(x, size=(out_h, out_w), mode="nearest-exact")
    else:
        y = F.interpolate(x, size=(out_h, out_w), mode="area")
    if is_uint8:
        y = y.round_().clamp_(0, 255).to(torch.uint8)
    return y.reshape(*lead, out_h, out_w)


def pad(img: Any, padding: int | Sequence[int], fill: float = 0) -> Any:
    """Pad with a constant: ``padding`` is an int, (left/right, top/bottom) or (left, top, right, bottom)."""
    if isinstance(padding, int):
        left = top = right = bottom = padding
    elif len(padding) == 2:
        left, right, top, bottom = padding[0], padding[0], padding[1], padding[1]
    elif len(padding) == 4:
        left, top, right, bottom = padding
    else:
        raise UsageError(f"padding must be an int or a sequence of 2 or 4 ints, got {padding}")
    if min(left, top, right, bottom) < 0:
        raise UsageError(f"padding must be non-negative, got {padding}")
    if left == top == right == bottom == 0:
        return img
    if is_pil_image(img):
        Image = require_pillow()
        out = Image.new(img.mode, (img.width + left + right, img.height + top + bottom), fill)
        if img.mode == "P" and img.palette is not None:
            out.putpalette(img.getpalette())
        out.paste(img, (left, top))
        return out
    if isinstance(img, torch.Tensor):
        return F.pad(img, (left, right, top, bottom), value=fill)
    raise UsageTypeError(f"pad expects a PIL image or a torch tensor, got {type(img).__name__}")


def crop(img: Any, top: int, left: int, height: int, width: int) -> Any:
    """Crop the box at (top, left) of the given size; parts outside the image are zeros."""
    if height <= 0 or width <= 0:
        raise UsageError(f"crop size must be positive, got {height}x{width}")
    if is_pil_image(img):
        return img.crop((left, top, left + width, top + height))
    if not isinstance(img, torch.Tensor):
        raise UsageTypeError(f"crop expects a PIL image or a torch tensor, got {type(img).__name__}")
    h, w = image_size(img)
    if top >= 0 and left >= 0 and top + height <= h and left + width <= w:
        return img[..., top : top + height, left : left + width]
    out = img.new_zeros(*img.shape[:-2], height, width)
    y0, y1 = max(top, 0), min(top + height, h)
    x0, x1 = max(left, 0), min(left + width, w)
    if y0 < y1 and x0 < x1:
        out[..., y0 - top : y1 - top, x0 - left : x1 - left] = img[..., y0:y1, x0:x1]
    return out


def center_crop(img: Any, size: Size) -> Any:
    """Crop the centre ``size`` box (torchvision's rule: offsets ``round((H - h) / 2)``, zero padding
    first when the crop is larger than the image)."""
    ch, cw = _pair(size)
    h, w = image_size(img)
    if ch > h or cw > w:
        img = pad(
            img,
            (
                (cw - w) // 2 if cw > w else 0,
                (ch - h) // 2 if ch > h else 0,
                (cw - w + 1) // 2 if cw > w else 0,
                (ch - h + 1) // 2 if ch > h else 0,
            ),
        )
        h, w = image_size(img)
    if (h, w) == (ch, cw):
        return img
    return crop(img, int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)), ch, cw)


def hflip(img: Any) -> Any:
    """Mirror left-right (PIL image or ``[..., W]`` tensor)."""
    if is_pil_image(img):
        return img.transpose(require_pillow().Transpose.FLIP_LEFT_RIGHT)
    if isinstance(img, torch.Tensor):
        return img.flip(-1)
    raise UsageTypeError(f"hflip expects a PIL image or a torch tensor, got {type(img).__name__}")


def to_tensor(pic: Any) -> torch.Tensor:
    """PIL image / HWC or HW numpy array / CHW tensor -> float32 CHW tensor.

    uint8 data is scaled to [0, 1]; other integer and float data keep their values (as torchvision).
    """
    if isinstance(pic, torch.Tensor):
        if pic.dtype == torch.uint8:
            return pic.float().div_(255.0)
        return pic if pic.dtype == torch.float32 else pic.float()
    if is_pil_image(pic):
        arr = np.array(pic)  # a writable copy
    elif isinstance(pic, np.ndarray):
        arr = pic
    else:
        raise UsageTypeError(
            f"to_tensor expects a PIL image, numpy array or tensor, got {type(pic).__name__}"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise UsageError(f"to_tensor expects an HWC or HW array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float()


def normalize(
    x: torch.Tensor, mean: Sequence[float], std: Sequence[float], inplace: bool = False
) -> torch.Tensor:
    """``(x - mean) / std`` per channel of a float ``[..., C, H, W]`` tensor (one value broadcasts)."""
    if not x.is_floating_point():
        raise UsageTypeError(f"normalize expects a float tensor (use to_tensor first), got {x.dtype}")
    if x.dim() < 3:
        raise UsageError(f"normalize expects a [..., C, H, W] tensor, got shape {tuple(x.shape)}")
    c = x.shape[-3]
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1)
    for name, v in (("mean", mean_t), ("std", std_t)):
        if v.numel() not in (1, c):
            raise UsageError(f"{name} has {v.numel()} values but the image has {c} channels")
    if bool((std_t == 0).any()):
        raise UsageError(f"std must be non-zero, got {tuple(std)}")
    mean_t, std_t = mean_t.reshape(-1, 1, 1), std_t.reshape(-1, 1, 1)
    if inplace:
        return x.sub_(mean_t).div_(std_t)
    return (x - mean_t) / std_t


# ITU-R 601-2 luma, the weights Pillow uses for convert("L").
_LUMA = (0.299, 0.587, 0.114)


def to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Adapt a ``[..., C, H, W]`` tensor to ``channels``: 1 -> 3 repeats the grey channel, 3 -> 1 takes
    the luma, 4 -> 3 drops alpha; equal counts pass through."""
    if x.dim() < 3:
        raise UsageError(f"to_channels expects a [..., C, H, W] tensor, got shape {tuple(x.shape)}")
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 1:
        return x.expand(*x.shape[:-3], channels, *x.shape[-2:]).contiguous()
    if c == 4 and channels == 3:
        return x[..., :3, :, :]
    if c in (3, 4) and channels == 1:
        w = torch.tensor(
            _LUMA, dtype=torch.float32 if not x.is_floating_point() else x.dtype, device=x.device
        )
        y = (x[..., :3, :, :].to(w.dtype) * w.reshape(3, 1, 1)).sum(-3, keepdim=True)
        return y.round().clamp(0, 255).to(x.dtype) if x.dtype == torch.uint8 else y
    raise UsageError(f"cannot convert an image with {c} channels to {channels} channels")


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random area/aspect crop (torchvision's RandomResizedCrop sampling)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    # Fallback: central crop with the aspect ratio clamped into range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w
