"""A corpus of hostile and awkward uploads for ``POST /score``, each with the answer it must get.

Limits of the test server (tests/integration/server_process.py TEST_LIMITS): 8 images, 2 MB
body, 4 Mpx per image. Everything is built in memory, deterministically, in well under a second.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

from PIL import Image

MAX_IMAGES = 8
MAX_BODY = 2_000_000
MAX_PIXELS = 4_000_000


@dataclass(frozen=True)
class Hostile:
    name: str
    files: list[tuple[str, bytes]]  # (filename, content), all in the field "images"
    status: int
    reason: str | None  # None for a 200


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims ``width x height`` grey pixels, with one tiny
    IDAT: a few dozen bytes that would need width*height bytes to decode."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def png_zip_bomb(side: int) -> bytes:
    """A real ``side x side`` black PNG: tiny on the wire, side**2 bytes once decoded."""
    raw = b"".join(b"\0" + b"\0" * side for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def _noise(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    image = Image.effect_noise(size, 40 + seed)
    return image.convert(mode) if mode != "L" else image


def _animated_gif() -> bytes:
    frames = [Image.new("P", (28, 28), i * 40) for i in range(5)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _sixteen_bit_png() -> bytes:
    grey = _noise("L", (28, 28)).convert("I").point(lambda v: v * 257)
    return _save(grey.convert("I;16"), "PNG")


def _palette_with_transparency() -> bytes:
    image = _noise("L", (30, 30)).convert("P")
    return _save(image, "PNG", transparency=0)


def corpus() -> list[Hostile]:
    good_png = _save(_noise("L", (28, 28)), "PNG")
    noise_png = _save(_noise("RGB", (64, 64), 3), "PNG")
    good_jpeg = _save(_noise("RGB", (300, 200), 1), "JPEG")
    big_ok_jpeg = _save(
        Image.linear_gradient("L").resize((2400, 1600)).convert("RGB"), "JPEG", quality=90
    )
    huge_jpeg = _save(Image.linear_gradient("L").resize((5000, 4000)), "JPEG", quality=50)
    megabytes = bytes((i * 7919 + 13) % 251 for i in range(1_500_000))  # deterministic junk
    return [
        Hostile("zero bytes", [("empty.png", b"")], 400, "not_an_image"),
        Hostile("text", [("notes.png", b"hello, I am not an image\n" * 40)], 400, "not_an_image"),
        Hostile("json", [("x.json", b'{"seed": 1}')], 400, "not_an_image"),
        Hostile(
            "html/svg",
            [("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")],
            400,
            "not_an_image",
        ),
        Hostile(
            "postscript (EPS is not an allowed format)",
            [("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")],
            400,
            "not_an_image",
        ),
        Hostile("PNG signature only", [("sig.png", b"\x89PNG\r\n\x1a\n")], 400, "not_an_image"),
        Hostile(
            "truncated PNG", [("cut.png", noise_png[: len(noise_png) // 2])], 400, "corrupt_image"
        ),
        Hostile(
            "truncated JPEG", [("cut.jpg", good_jpeg[: len(good_jpeg) // 2])], 400, "corrupt_image"
        ),
        Hostile(
            "PNG with a bad CRC", [("crc.png", good_png[:-5] + b"\x00" + good_png[-4:])], 200, None
        ),
        Hostile("PNG named .jpg", [("photo.jpg", good_png)], 200, None),
        Hostile("JPEG named .png", [("digit.png", good_jpeg)], 200, None),
        Hostile("no extension, odd name", [("../../etc/passwd\r\n\x00é", good_png)], 200, None),
        Hostile(
            "PNG header claiming 100000x100000",
            [("bomb.png", png_claiming(100_000, 100_000))],
            413,
            "image_too_large",
        ),
        Hostile(
            "PNG header claiming 2^31-1 x 1",
            [("wide.png", png_claiming(2**31 - 1, 1))],
            413,
            "image_too_large",
        ),
        Hostile("PNG header claiming 0x0", [("zero.png", png_claiming(0, 0))], 400, "not_an_image"),
        Hostile(
            "PNG zip bomb just under the pixel limit (1900^2)",
            [("zip.png", png_zip_bomb(1900))],
            200,
            None,
        ),
        Hostile(
            "PNG zip bomb over the pixel limit (2100^2)",
            [("zip2.png", png_zip_bomb(2100))],
            413,
            "image_too_large",
        ),
        Hostile(
            "PPM claiming 100000x100000",
            [("bomb.ppm", b"P5 100000 100000 255\n" + b"\0" * 100)],
            413,
            "image_too_large",
        ),
        Hostile("huge JPEG 5000x4000 (20 Mpx)", [("huge.jpg", huge_jpeg)], 413, "image_too_large"),
        Hostile("big JPEG 2400x1600, under the limit", [("big.jpg", big_ok_jpeg)], 200, None),
        Hostile("16-bit PNG", [("deep.png", _sixteen_bit_png())], 200, None),
        Hostile(
            "CMYK JPEG",
            [("cmyk.jpg", _save(_noise("L", (40, 40)).convert("CMYK"), "JPEG"))],
            200,
            None,
        ),
        Hostile(
            "palette PNG",
            [("pal.png", _save(_noise("L", (30, 30)).convert("P"), "PNG"))],
            200,
            None,
        ),
        Hostile(
            "palette PNG with transparency", [("palt.png", _palette_with_transparency())], 200, None
        ),
        Hostile("RGBA PNG", [("alpha.png", _save(_noise("RGBA", (32, 32)), "PNG"))], 200, None),
        Hostile("LA PNG", [("la.png", _save(_noise("LA", (28, 28)), "PNG"))], 200, None),
        Hostile("1-bit PNG", [("bw.png", _save(_noise("1", (28, 28)), "PNG"))], 200, None),
        Hostile("animated GIF", [("anim.gif", _animated_gif())], 200, None),
        Hostile("1x1 BMP", [("dot.bmp", _save(Image.new("RGB", (1, 1)), "BMP"))], 200, None),
        Hostile("WebP", [("w.webp", _save(_noise("RGB", (40, 40)), "WEBP"))], 200, None),
        Hostile("TIFF", [("t.tiff", _save(_noise("L", (28, 28)), "TIFF"))], 200, None),
        Hostile("1.5 MB non-image", [("blob.png", megabytes)], 400, "not_an_image"),
        Hostile(
            "3 MB non-image (over the body limit)",
            [("blob.bin", megabytes * 2)],
            413,
            "body_too_large",
        ),
        Hostile(
            f"{MAX_IMAGES} files (the limit)",
            [(f"{i}.png", good_png) for i in range(MAX_IMAGES)],
            200,
            None,
        ),
        Hostile(
            f"{MAX_IMAGES + 1} files",
            [(f"{i}.png", good_png) for i in range(MAX_IMAGES + 1)],
            400,
            "too_many_images",
        ),
        Hostile(
            "1000 empty files", [(f"{i}.png", b"") for i in range(1000)], 400, "too_many_images"
        ),
        Hostile(
            "good files then a bad one",
            [("a.png", good_png), ("b.png", good_png), ("c.png", b"junk")],
            400,
            "not_an_image",
        ),
    ]
