"""Reading images the same way everywhere: RGB, transparency composited onto white.

Emoji, icons and scans often come as RGBA or palette PNGs; converting them straight to
RGB turns transparent pixels black, which a model then learns as a background colour.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from hiercore.errors import DataError


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB on a white background."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        image = image.convert("RGBA")
        canvas = Image.new("RGB", image.size, "white")
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def open_rgb(path: str | Path) -> Image.Image:
    """Open and decode an image file, or raise one `DataError` sentence naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb(im)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path} is not a readable image ({exc}).") from None
