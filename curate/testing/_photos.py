"""Real photos for the synthetic web: scikit-image's bundled images, cropped and rescaled.

Only images that ship inside the scikit-image wheel are used, so building a web never
touches the network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["PHOTO_SOURCES", "PhotoSource", "Window", "crop_window", "iou", "load_photo"]

Window = tuple[float, float, float, float]
"""A crop as fractions of the source: (left, top, right, bottom), each in [0, 1]."""


@dataclass(frozen=True)
class PhotoSource:
    """One bundled image with captions that stay true for any crop we take of it."""

    name: str
    captions: tuple[str, ...]
    min_frac: float = 0.6
    """Smallest crop side as a fraction of the source side, so the subject stays in view."""
    distinct_regions: bool = False
    """True when two far-apart crops look clearly different: fit for near/hard pairs."""


PHOTO_SOURCES: tuple[PhotoSource, ...] = (
    PhotoSource(
        "astronaut",
        (
            "an astronaut in an orange spacesuit posing in front of a flag",
            "a smiling astronaut in an orange flight suit",
            "a portrait of a female astronaut next to a model space shuttle",
        ),
        min_frac=0.6,
    ),
    PhotoSource(
        "coffee",
        (
            "a cup of coffee on a saucer seen from above",
            "a red cup of coffee on a wooden table",
            "a cup of black coffee on a red saucer",
        ),
        min_frac=0.6,
        distinct_regions=True,
    ),
    PhotoSource(
        "chelsea",
        (
            "a ginger cat looking to the side",
            "a close-up of a tabby cat",
            "the face of a striped orange cat",
        ),
        min_frac=0.55,
        distinct_regions=True,
    ),
    PhotoSource(
        "rocket",
        (
            "a rocket on a launch pad at night",
            "a space rocket standing between launch towers at dusk",
        ),
        min_frac=0.55,
    ),
    PhotoSource(
        "camera",
        (
            "a black and white photo of a man with a camera on a tripod",
            "a cameraman standing in a field, in black and white",
        ),
        min_frac=0.6,
    ),
    PhotoSource(
        "coins",
        (
            "rows of old coins on a dark background",
            "a black and white photo of many old coins",
        ),
        min_frac=0.45,
        distinct_regions=True,
    ),
    PhotoSource(
        "horse",
        (
            "a black silhouette of a horse on a white background",
            "the outline of a horse in black on white",
        ),
        min_frac=0.6,
    ),
    PhotoSource(
        "hubble_deep_field",
        (
            "a deep field image of distant galaxies in space",
            "many small galaxies against the black of space",
        ),
        min_frac=0.4,
    ),
    PhotoSource(
        "immunohistochemistry",
        (
            "a microscope image of stained tissue",
            "a tissue sample stained brown and blue under a microscope",
        ),
        min_frac=0.45,
        distinct_regions=True,
    ),
    PhotoSource(
        "moon",
        (
            "a black and white photo of the cratered surface of the moon",
            "craters on a gray lunar surface",
        ),
        min_frac=0.45,
        distinct_regions=True,
    ),
    PhotoSource(
        "page",
        (
            "a scanned page of printed text",
            "a grayscale scan of a page from a book",
        ),
        min_frac=0.5,
    ),
    PhotoSource(
        "retina",
        (
            "a photo of the retina of a human eye",
            "a fundus image of an eye with red blood vessels",
        ),
        min_frac=0.55,
    ),
    PhotoSource(
        "text",
        (
            "handwritten notes on a sheet of paper",
            "a grayscale photo of handwriting on paper",
        ),
        min_frac=0.45,
    ),
    PhotoSource(
        "clock",
        (
            "a motion blurred clock on a gray wall",
            "a blurry black and white photo of a clock",
        ),
        min_frac=0.6,
    ),
    PhotoSource(
        "brick",
        (
            "a close-up of a brick wall in black and white",
            "a gray brick wall texture",
        ),
        min_frac=0.4,
    ),
    PhotoSource(
        "grass",
        (
            "a close-up of grass in black and white",
            "a grayscale texture of grass blades",
        ),
        min_frac=0.4,
    ),
    PhotoSource(
        "gravel",
        (
            "a close-up of gravel in black and white",
            "a grayscale texture of small pebbles",
        ),
        min_frac=0.4,
    ),
    PhotoSource(
        "colorwheel",
        (
            "a color wheel on a black background",
            "a circle of rainbow colors fading to white in the center",
        ),
        min_frac=0.55,
    ),
    PhotoSource(
        "logo",
        (
            "the scikit-image logo on a white background",
            "a green and orange circular logo with a snake",
        ),
        min_frac=0.6,
    ),
    PhotoSource(
        "cell",
        (
            "a microscope image of a single round cell",
            "a grayscale microscopy image of a bright cell",
        ),
        min_frac=0.7,
    ),
)


@functools.cache
def load_photo(name: str) -> Image.Image:
    """Load a bundled image as 8-bit RGB; cached because sources are reused many times."""
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)())
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    img = Image.fromarray(arr)
    if img.mode == "RGBA":
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        return flat
    return img.convert("RGB")


def iou(a: Window, b: Window) -> float:
    """Overlap of two crop windows; used to keep same-source crops apart."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def crop_window(img: Image.Image, window: Window, longest: int) -> Image.Image:
    """Crop by fractional window and rescale so the longest side is `longest` pixels."""
    w, h = img.size
    box = (
        round(window[0] * w),
        round(window[1] * h),
        max(round(window[2] * w), round(window[0] * w) + 1),
        max(round(window[3] * h), round(window[1] * h) + 1),
    )
    cw, ch = box[2] - box[0], box[3] - box[1]
    scale = longest / max(cw, ch)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, box=box)
