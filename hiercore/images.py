"""Reading images the same way everywhere (training, evaluation, prediction, baselines):
RGB, transparency composited onto white, EXIF orientation applied.

Emoji, icons and scans often come as RGBA or palette PNGs; converting them straight to
RGB turns transparent pixels black, which a model then learns as a background colour.

Sizes are checked from the header, before any pixel is decoded: a few kilobytes of PNG
can declare gigapixels (a decompression bomb), and a 1x100000 strip, resized so that its
short side fits CLIP's input, would become billions of pixels (`size_problem`).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from hiercore.errors import DataError

MAX_PIXELS = 100_000_000
"""The most pixels an image may have (Pillow warns from 89 million)."""
MAX_ASPECT_RATIO = 50
"""The most the long side may exceed the short one (a wide panorama is about 10)."""


def size_problem(width: int, height: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why an image of this size is refused (a clause naming the size), or None."""
    if width * height > max_pixels:
        return f"{width}x{height} pixels is more than the {max_pixels} limit"
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"{width}x{height} pixels is an aspect ratio beyond the {MAX_ASPECT_RATIO}:1 limit"
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on a white background."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, "white")
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def open_rgb(path: str | Path, name: str | None = None) -> Image.Image:
    """Open and decode an image file, or raise one `DataError` sentence naming it.

    `name` is how the sentence calls the file (default: its path); the studio passes the
    file name, so a server's temp folder never shows.
    """
    label = str(path) if name is None else name
    try:
        with Image.open(path) as im:
            problem = size_problem(*im.size)
            if problem is None:
                im.load()
                # a camera's EXIF orientation says how the picture is meant to be seen
                return to_rgb(ImageOps.exif_transpose(im))
    except Image.DecompressionBombError:
        problem = f"it has more than the {MAX_PIXELS} pixel limit"
    except UnidentifiedImageError:
        raise DataError(f"{label} is not an image (not a format Pillow can read).") from None
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc).replace(str(path), label)
        raise DataError(f"{label} is not a readable image ({why}).") from None
    raise DataError(f"{label} is refused: {problem}.")
