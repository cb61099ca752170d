"""Thumbnail arithmetic and rendering (content_repo.md, "Thumbnails"); no server, no database."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from homeserver.media import thumbnailer as t


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def gradient(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """A picture with detail in both directions (so crops and scales are visible), built fast."""
    red = Image.linear_gradient("L").rotate(90).resize((w, h))
    green = Image.linear_gradient("L").resize((w, h))
    bands = [red, green, Image.new("L", (w, h), 128)] + ([Image.new("L", (w, h), 200)] if mode == "RGBA" else [])
    return Image.merge(mode, bands)


def animated(fmt: str, w: int = 40, h: int = 30, n: int = 4) -> bytes:
    frames = [Image.new("RGB", (w, h), (i * 60, 0, 255 - i * 60)) for i in range(n)]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0)


# --- size arithmetic -------------------------------------------------------------------------

def test_scale_fits_inside_box_keeping_aspect_ratio():
    assert t.scaled_size(1000, 500, 320, 240) == (320, 160)
    assert t.scaled_size(500, 1000, 320, 240) == (120, 240)


def test_scale_never_upscales():
    assert t.scaled_size(100, 50, 320, 240) == (100, 50)


def test_crop_has_the_requested_aspect_ratio():
    assert t.cropped_size(1000, 500, 96, 96) == (96, 96)
    assert t.cropped_size(1000, 500, 64, 32) == (64, 32)


def test_crop_shrinks_instead_of_upscaling_a_small_source():
    assert t.cropped_size(50, 200, 96, 96) == (50, 50)


def test_standard_size_is_the_smallest_box_not_smaller_than_the_request():
    assert t.pick_standard_size(64, 64, "crop") == t.ThumbnailSpec(96, 96, "crop")
    assert t.pick_standard_size(32, 32, "crop") == t.ThumbnailSpec(32, 32, "crop")
    assert t.pick_standard_size(100, 100, "scale") == t.ThumbnailSpec(320, 240, "scale")
    assert t.pick_standard_size(700, 500, "scale") == t.ThumbnailSpec(800, 600, "scale")


def test_crop_request_with_another_aspect_ratio_is_generated_on_demand():
    assert t.pick_standard_size(40, 20, "crop") is None


def test_request_larger_than_every_standard_size_is_generated_on_demand():
    assert t.pick_standard_size(1024, 768, "scale") is None


def test_standard_sizes_are_the_ones_the_spec_lists():
    assert {(s.width, s.height, s.method) for s in t.STANDARD_SIZES} == {
        (32, 32, "crop"), (96, 96, "crop"), (320, 240, "scale"), (640, 480, "scale"), (800, 600, "scale")}


# --- probing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,ctype", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"),
                                       ("WEBP", "image/webp")])
def test_probe_reports_dimensions_and_real_type(fmt, ctype):
    info = t.probe(encode(gradient(64, 48), fmt))
    assert (info.width, info.height, info.content_type, info.animated) == (64, 48, ctype, False)


def test_probe_recognises_animated_png_as_apng():
    info = t.probe(animated("PNG"))
    assert info.animated and info.content_type == "image/apng"


def test_probe_refuses_bytes_that_are_not_an_image():
    with pytest.raises(t.ThumbnailError):
        t.probe(b"<html><script>alert(1)</script></html>")


def test_probe_refuses_formats_outside_the_allow_list():
    with pytest.raises(t.ThumbnailError):
        t.probe(encode(gradient(8, 8), "BMP"))


def test_image_over_the_pixel_limit_is_too_large():
    with pytest.raises(t.ImageTooLarge):
        t.probe(encode(gradient(100, 100), "PNG"), max_pixels=5000)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions: the classic decompression bomb header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_from_its_header_without_decoding():
    with pytest.raises(t.ImageTooLarge):
        t.make_thumbnail(_png_header_only(60000, 60000), 32, 32, "crop")


def test_truncated_image_is_a_thumbnail_error_not_a_crash():
    data = encode(gradient(200, 200), "PNG")
    with pytest.raises(t.ThumbnailError):
        t.make_thumbnail(data[: len(data) // 2], 32, 32, "crop")


# --- rendering -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    return encode(gradient(1600, 1200), "JPEG")


@pytest.mark.parametrize("spec", t.STANDARD_SIZES)
def test_standard_thumbnails_of_a_large_jpeg_have_the_expected_dimensions(spec, large_jpeg):
    src = large_jpeg
    thumb = t.make_thumbnail(src, spec.width, spec.height, spec.method)
    im = decode(thumb.data)
    assert im.format == "JPEG" and thumb.content_type == "image/jpeg"
    assert im.size == (spec.width, spec.height) == (thumb.width, thumb.height)


def test_crop_thumbnail_of_a_wide_image_is_square():
    thumb = t.make_thumbnail(encode(gradient(400, 100), "PNG"), 32, 32, "crop")
    assert decode(thumb.data).size == (32, 32)


def test_png_with_alpha_stays_png_with_alpha():
    thumb = t.make_thumbnail(encode(gradient(200, 200, "RGBA"), "PNG"), 96, 96, "crop")
    im = decode(thumb.data)
    assert im.format == "PNG" and im.mode == "RGBA" and thumb.content_type == "image/png"


def test_webp_source_is_thumbnailed_to_png():
    thumb = t.make_thumbnail(encode(gradient(400, 300), "WEBP"), 320, 240, "scale")
    im = decode(thumb.data)
    assert im.format == "PNG" and im.size == (320, 240)


def test_static_thumbnail_of_an_animated_gif_is_its_first_frame():
    thumb = t.make_thumbnail(animated("GIF", 400, 300), 32, 32, "crop")
    im = decode(thumb.data)
    assert not getattr(im, "is_animated", False) and thumb.animated is False
    r, g, b = im.convert("RGB").getpixel((16, 16))
    assert r < 30 and b > 220  # frame 0 is blue


def test_animated_request_of_an_animated_gif_gives_animated_webp():
    thumb = t.make_thumbnail(animated("GIF", 400, 300), 96, 96, "crop", animated=True)
    im = Image.open(io.BytesIO(thumb.data))
    assert thumb.content_type == "image/webp" and im.format == "WEBP" and im.is_animated
    assert im.n_frames == 4 and im.size == (96, 96)


def test_animated_request_of_a_still_image_gives_a_still_thumbnail():
    thumb = t.make_thumbnail(encode(gradient(400, 300), "JPEG"), 96, 96, "crop", animated=True)
    assert thumb.content_type == "image/jpeg" and thumb.animated is False


def test_first_frame_of_an_animated_png_keeps_its_size():
    thumb = t.first_frame(animated("PNG", 40, 30))
    im = decode(thumb.data)
    assert im.size == (40, 30) and not getattr(im, "is_animated", False)


def test_small_image_is_served_as_original():
    info = t.probe(encode(gradient(20, 20), "PNG"))
    assert t.should_serve_original(info, 32, 32)
    assert not t.should_serve_original(info, 16, 32)


def test_output_size_is_none_when_the_original_already_fits():
    info = t.probe(encode(gradient(90, 50), "PNG"))
    assert t.output_size(info, 320, 240, "scale") is None
    assert t.output_size(info, 96, 96, "crop") == (50, 50)  # crop keeps the box's aspect ratio
    assert t.output_size(info, 90, 50, "crop") is None
    assert t.output_size(info, 45, 25, "scale") == (45, 25)


def test_jpeg_exif_rotation_is_applied():
    im = gradient(200, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    thumb = t.make_thumbnail(encode(im, "JPEG", exif=exif), 50, 200, "scale")
    assert decode(thumb.data).size == (50, 100)
