"""Thumbnail arithmetic and image decoding: plain functions over bytes, no I/O (Pillow only).

Rules from client-server-api/modules/content_repo.md, "Thumbnails":
- ``crop`` returns an image in the aspect ratio of the requested box; ``scale`` keeps the source's
  aspect ratio and fits inside the box (Synapse's reading of "either the width or the height is
  smaller than the requested size").
- Servers MUST NOT upscale; when the content is smaller than the requested box the original is
  served (see :func:`should_serve_original`).
- Servers SHOULD pre-generate 32x32 crop, 96x96 crop, 320x240 scale, 640x480 scale, 800x600 scale
  (:data:`STANDARD_SIZES`).
- ``animated``: false MUST NOT give an animated thumbnail; true SHOULD give one where possible,
  preferably ``image/webp``.

Decoding is restricted to JPEG, PNG (and APNG), GIF and WebP; anything else is "cannot thumbnail".
Decompression bombs are refused before any pixel is decoded: the header's width x height (times
the frame count for animations) is compared with ``max_pixels``.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# Synapse's default max_image_pixels ("32M"); Pillow's own guard is set to the same value so a
# code path that forgets the explicit check still refuses a bomb (Pillow raises at 2x this).
DEFAULT_MAX_IMAGE_PIXELS = 32 * 1024 * 1024


_PIL: tuple | None = None


def _pil():
    """Pillow's ``(Image, ImageOps, UnidentifiedImageError)``, imported on the first image handled
    (about 3 MB a server that never thumbnails need not hold; issue 9, memory)."""
    global _PIL
    if _PIL is None:
        from PIL import Image, ImageOps, UnidentifiedImageError
        Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_IMAGE_PIXELS
        _PIL = (Image, ImageOps, UnidentifiedImageError)
    return _PIL

# Formats Pillow may decode here; everything else is refused without trying other decoders.
DECODABLE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")

# Content types worth handing to the decoder (content_repo.md lists the thumbnail output types).
THUMBNAILABLE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/apng",
                                 "image/gif", "image/webp"})

# Frames decoded at most for an animated thumbnail; longer animations are cut.
MAX_ANIMATION_FRAMES = 100

METHODS = ("crop", "scale")


class ThumbnailError(Exception):
    """The content cannot be thumbnailed (not an image we decode, or a broken one)."""


class ImageTooLarge(ThumbnailError):
    """The image has more pixels than the configured limit (content_repo.md: 413 M_TOO_LARGE)."""


@dataclass(frozen=True)
class ThumbnailSpec:
    width: int
    height: int
    method: str  # "crop" | "scale"


# content_repo.md, "Thumbnails": the sizes servers SHOULD produce.
STANDARD_SIZES: tuple[ThumbnailSpec, ...] = (
    ThumbnailSpec(32, 32, "crop"),
    ThumbnailSpec(96, 96, "crop"),
    ThumbnailSpec(320, 240, "scale"),
    ThumbnailSpec(640, 480, "scale"),
    ThumbnailSpec(800, 600, "scale"),
)


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str  # Pillow format name: JPEG, PNG, GIF, WEBP
    content_type: str  # what the bytes really are (image/apng for animated PNG)
    frames: int

    @property
    def animated(self) -> bool:
        return self.frames > 1


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    content_type: str
    width: int
    height: int
    animated: bool = False


def base_content_type(content_type: str | None) -> str:
    """``"Image/PNG; charset=x"`` -> ``"image/png"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_thumbnailable_type(content_type: str | None) -> bool:
    return base_content_type(content_type) in THUMBNAILABLE_TYPES


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse bombs before decoding any pixel."""
    Image, _ImageOps, UnidentifiedImageError = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=DECODABLE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageTooLarge(str(e)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as e:
        raise ThumbnailError(f"not a decodable image: {e}") from None
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ThumbnailError("image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height}, more than {max_pixels} pixels")
    return im


def probe(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ImageInfo:
    """Dimensions, format and frame count from the header; raises ThumbnailError/ImageTooLarge."""
    im = _open(data, max_pixels)
    try:
        frames = int(getattr(im, "n_frames", 1) or 1)
    except Exception as e:  # a truncated animation can fail while counting frames
        raise ThumbnailError(f"broken image: {e}") from None
    content_type = im.get_format_mimetype() or f"image/{im.format.lower()}"
    if im.format == "PNG" and frames > 1:
        content_type = "image/apng"
    return ImageInfo(im.width, im.height, im.format, content_type, frames)


# --- size arithmetic (pure integers) -----------------------------------------------------------

def scaled_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size with the source's aspect ratio that fits inside the box, never upscaled."""
    if src_w <= box_w and src_h <= box_h:
        return src_w, src_h
    if src_w * box_h >= src_h * box_w:  # width is the limiting side
        return box_w, max(1, round(src_h * box_w / src_w))
    return max(1, round(src_w * box_h / src_h)), box_h


def cropped_size(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The output size for ``crop``: the box's aspect ratio, shrunk if the source is too small
    to fill the box without upscaling."""
    k = min(1.0, src_w / box_w, src_h / box_h)
    return max(1, round(box_w * k)), max(1, round(box_h * k))


def should_serve_original(info: ImageInfo, width: int, height: int) -> bool:
    """content_repo.md: "When the content is smaller than the requested dimensions, servers
    should return the original content rather than thumbnail it"."""
    return info.width <= width and info.height <= height


def output_size(info: ImageInfo, width: int, height: int, method: str) -> tuple[int, int] | None:
    """The size a thumbnail for this box would have, or None when that is the original's size
    (the original is then served as is: nothing to shrink, and upscaling is forbidden)."""
    if method == "crop":
        size = cropped_size(info.width, info.height, width, height)
    else:
        size = scaled_size(info.width, info.height, width, height)
    return None if size == (info.width, info.height) else size


def pick_standard_size(width: int, height: int, method: str,
                       sizes: tuple[ThumbnailSpec, ...] = STANDARD_SIZES) -> ThumbnailSpec | None:
    """The smallest pre-generated size that serves a request, or None to generate on demand.

    A standard size serves the request when it uses the same method, its box is at least the
    requested box in both dimensions (never smaller than asked), and for ``crop`` when it has the
    requested aspect ratio (crop promises the aspect ratio of the request).
    """
    fits = [s for s in sizes if s.method == method and s.width >= width and s.height >= height
            and (method != "crop" or s.width * height == s.height * width)]
    return min(fits, key=lambda s: (s.width * s.height, s.width), default=None)


# --- rendering -----------------------------------------------------------------------------------

def _output_format(info: ImageInfo, has_alpha: bool) -> tuple[str, str]:
    """JPEG sources stay JPEG (small, no alpha to lose); everything else becomes PNG."""
    if info.format == "JPEG" and not has_alpha:
        return "JPEG", "image/jpeg"
    return "PNG", "image/png"


def _resize_frame(frame: Image.Image, src_w: int, src_h: int, width: int, height: int,
                  method: str) -> Image.Image:
    Image, ImageOps, _error = _pil()
    if method == "crop":
        out_w, out_h = cropped_size(src_w, src_h, width, height)
        # Scale to cover the output box, then cut the centre.
        return ImageOps.fit(frame, (out_w, out_h), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    out_w, out_h = scaled_size(src_w, src_h, width, height)
    if (out_w, out_h) == (src_w, src_h):
        return frame.copy()
    return frame.resize((out_w, out_h), Image.Resampling.LANCZOS)


def _normalise_mode(frame: Image.Image) -> tuple[Image.Image, bool]:
    """RGB or RGBA; palette and greyscale images with transparency keep it."""
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
    target = "RGBA" if has_alpha else "RGB"
    return (frame if frame.mode == target else frame.convert(target)), has_alpha


def make_thumbnail(data: bytes, width: int, height: int, method: str, *, animated: bool = False,
                   max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Thumbnail:
    """Render a thumbnail of ``data`` for a width x height box.

    Static thumbnails use the first frame. With ``animated`` and an animated source the result is
    an animated WebP (content_repo.md prefers image/webp for animation) of at most
    :data:`MAX_ANIMATION_FRAMES` frames. Raises ThumbnailError / ImageTooLarge.
    """
    if method not in METHODS:
        raise ValueError(f"unknown thumbnail method {method!r}")
    if width < 1 or height < 1:
        raise ValueError("thumbnail dimensions must be positive")
    Image, ImageOps, _error = _pil()
    info = probe(data, max_pixels=max_pixels)
    if animated and info.animated:
        frames = min(info.frames, MAX_ANIMATION_FRAMES)
        if info.width * info.height * frames > max_pixels * 4:
            animated = False  # too much to decode: fall back to the first frame
    else:
        animated = False
    im = _open(data, max_pixels)
    try:
        if not animated:
            im.seek(0)
            im.load()
            frame = ImageOps.exif_transpose(im) if info.format == "JPEG" else im
            src_w, src_h = frame.size
            frame, has_alpha = _normalise_mode(frame)
            out = _resize_frame(frame, src_w, src_h, width, height, method)
            fmt, ctype = _output_format(info, has_alpha)
            buf = io.BytesIO()
            if fmt == "JPEG":
                out.save(buf, "JPEG", quality=80, optimize=True)
            else:
                out.save(buf, "PNG", optimize=True)
            return Thumbnail(buf.getvalue(), ctype, out.width, out.height, False)
        rendered: list[Image.Image] = []
        durations: list[int] = []
        for index in range(min(info.frames, MAX_ANIMATION_FRAMES)):
            im.seek(index)
            frame, _ = _normalise_mode(im.convert("RGBA"))
            rendered.append(_resize_frame(frame, info.width, info.height, width, height, method))
            durations.append(int(im.info.get("duration", 100) or 100))
        buf = io.BytesIO()
        rendered[0].save(buf, "WEBP", save_all=True, append_images=rendered[1:], duration=durations,
                         loop=0, quality=80)
        return Thumbnail(buf.getvalue(), "image/webp", rendered[0].width, rendered[0].height, True)
    except ThumbnailError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, Image.DecompressionBombError) as e:
        raise ThumbnailError(f"broken image: {e}") from None
    finally:
        im.close()


def first_frame(data: bytes, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Thumbnail:
    """The first frame at full size (PNG): an animated original asked for with ``animated=false``."""
    info = probe(data, max_pixels=max_pixels)
    return make_thumbnail(data, info.width, info.height, "scale", max_pixels=max_pixels)
