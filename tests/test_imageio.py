"""Page file reading/writing: formats, bit depths, modes, orientation, DPI, bad files, atomic writes."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

from mdim_core.imaging import imageio


def _ramp(h=24, w=32):
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 256).astype(np.uint8)


def test_grayscale_png_roundtrip_exact_and_dpi(tmp_path):
    g = _ramp()
    Image.fromarray(g).save(tmp_path / "p.png", dpi=(600, 600))
    page = imageio.read_page(tmp_path / "p.png")
    assert page.pixels.dtype == np.float32 and page.pixels.shape == (24, 32, 1)
    assert page.bit_depth == 8 and page.format == "PNG"
    assert page.dpi == (600.0, 600.0)
    np.testing.assert_array_equal(np.round(page.pixels[..., 0] * 255).astype(np.uint8), g)
    imageio.write_image(tmp_path / "q.png", page.pixels, dpi=page.dpi)
    again = imageio.read_page(tmp_path / "q.png")
    np.testing.assert_array_equal(again.pixels, page.pixels)
    assert again.dpi == (600.0, 600.0)


@pytest.mark.parametrize("ext", [".png", ".tif", ".jpg", ".webp"])
def test_every_format_reads_and_writes(tmp_path, ext):
    rgb = np.stack([_ramp(), _ramp()[::-1], np.full((24, 32), 200, np.uint8)], axis=-1)
    imageio.write_image(tmp_path / f"a{ext}", rgb.astype(np.float32) / 255, dpi=(300, 300))
    page = imageio.read_page(tmp_path / f"a{ext}")
    assert page.pixels.shape == (24, 32, 3)
    err = np.abs(page.pixels - rgb / 255.0)
    if ext == ".jpg":  # lossy
        assert err.mean() < 2 / 255
    else:
        assert err.max() < 1e-6
    if ext != ".webp":  # Pillow writes no resolution into WebP
        assert page.dpi == (300.0, 300.0)


def test_16bit_grayscale_tiff_and_png_keep_precision(tmp_path):
    rng = np.random.default_rng(0)
    g16 = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    for ext in (".tif", ".png"):
        Image.fromarray(g16).save(tmp_path / f"g{ext}")
        page = imageio.read_page(tmp_path / f"g{ext}")
        assert page.bit_depth == 16 and page.pixels.shape == (20, 30, 1)
        np.testing.assert_array_equal(np.round(page.pixels[..., 0] * 65535).astype(np.uint16), g16)
        # and written back at 16 bits, bit-exact
        imageio.write_image(tmp_path / f"out{ext}", page.pixels, bit_depth=16)
        back = np.asarray(Image.open(tmp_path / f"out{ext}"))
        np.testing.assert_array_equal(back, g16)


def test_16bit_rgb_tiff_reads(tmp_path):
    cv2 = pytest.importorskip("cv2")
    rgb16 = np.zeros((10, 12, 3), np.uint16)
    rgb16[..., 0] = 65535  # red in RGB order
    cv2.imwrite(str(tmp_path / "c.tif"), rgb16[..., ::-1])  # OpenCV writes BGR
    page = imageio.read_page(tmp_path / "c.tif")
    assert page.pixels.shape == (10, 12, 3)
    np.testing.assert_allclose(page.pixels[0, 0], [1.0, 0.0, 0.0])


def test_rgba_alpha_dropped_with_log(tmp_path, caplog):
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 10
    a[..., 1] = 20
    a[..., 2] = 30
    a[..., 3] = 0  # fully transparent: the colour is still what is kept
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    with caplog.at_level("INFO", logger="MDIM"):
        page = imageio.read_page(tmp_path / "a.png")
    assert page.pixels.shape == (8, 8, 3)
    np.testing.assert_allclose(page.pixels[0, 0] * 255, [10, 20, 30], atol=1e-4)
    assert any("alpha channel dropped" in r.getMessage() for r in caplog.records)


def test_palette_and_bilevel(tmp_path):
    p = Image.new("P", (6, 4))
    p.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    p.save(tmp_path / "p.png")
    page = imageio.read_page(tmp_path / "p.png")
    assert page.pixels.shape == (4, 6, 3)
    np.testing.assert_allclose(page.pixels[1, 1], [1, 1, 0])
    np.testing.assert_allclose(page.pixels[0, 0], [0, 0, 0])
    b = Image.new("1", (5, 3), 1)
    b.putpixel((2, 1), 0)
    b.save(tmp_path / "b.png")
    page = imageio.read_page(tmp_path / "b.png")
    assert page.pixels.shape == (3, 5, 1) and page.pixels[1, 2, 0] == 0 and page.pixels[0, 0, 0] == 1


def test_cmyk_jpeg_converted_to_rgb(tmp_path):
    # pure cyan, pure yellow, 50 % black, white (CMYK values as Pillow stores them)
    im = Image.new("CMYK", (32, 8), (0, 0, 0, 0))
    im.paste((255, 0, 0, 0), (0, 0, 8, 8))
    im.paste((0, 0, 255, 0), (8, 0, 16, 8))
    im.paste((0, 0, 0, 128), (16, 0, 24, 8))
    im.save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    page = imageio.read_page(tmp_path / "c.jpg")
    assert page.pixels.shape == (8, 32, 3)
    px = page.pixels[4, [4, 12, 20, 28]] * 255
    np.testing.assert_allclose(px[0], [0, 255, 255], atol=8)  # cyan
    np.testing.assert_allclose(px[1], [255, 255, 0], atol=8)  # yellow
    np.testing.assert_allclose(px[2], [127, 127, 127], atol=8)  # half black
    np.testing.assert_allclose(px[3], [255, 255, 255], atol=8)  # paper


def test_exif_orientation_applied(tmp_path):
    g = np.zeros((10, 20), np.uint8)
    g[0, 0] = 255  # marker at top-left of the stored image
    im = Image.fromarray(g)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    im.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100)
    page = imageio.read_page(tmp_path / "o.jpg")
    assert page.pixels.shape == (20, 10, 1)
    # rotating 90 degrees clockwise moves the top-left corner to the top-right
    assert page.pixels[0, -1, 0] > 0.5 and page.pixels[0, 0, 0] < 0.3


def test_missing_empty_garbage_truncated_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        imageio.read_page(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        imageio.read_page(tmp_path / "empty.png")
    (tmp_path / "text.png").write_bytes(b"this is not an image at all")
    with pytest.raises(ValueError, match="not a readable image"):
        imageio.read_page(tmp_path / "text.png")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    for ext, blob in ((".png", data[: len(data) // 2]),):
        (tmp_path / f"cut{ext}").write_bytes(blob)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            imageio.read_page(tmp_path / f"cut{ext}")
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        imageio.read_page(tmp_path / "cut.jpg")


def test_too_many_pixels_refused_and_long_strip_read(tmp_path):
    strip = np.full((16, 10_000), 200, np.uint8)
    Image.fromarray(strip).save(tmp_path / "strip.png")
    page = imageio.read_page(tmp_path / "strip.png")
    assert page.pixels.shape == (16, 10_000, 1)
    with pytest.raises(ValueError, match="max_pixels"):
        imageio.read_page(tmp_path / "strip.png", max_pixels=100_000)


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="zero-size"):
        imageio.write_image(tmp_path / "z.png", np.zeros((0, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        imageio.write_image(tmp_path / "z.png", np.zeros((4, 5, 2), np.float32))
    with pytest.raises(ValueError, match="format"):
        imageio.write_image(tmp_path / "z.bmpx", np.zeros((4, 5), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic_on_full_disk(tmp_path, monkeypatch):
    target = tmp_path / "page.png"
    imageio.write_image(target, np.full((8, 8), 0.25, np.float32))
    before = target.read_bytes()
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError) as info:
        imageio.write_image(target, np.full((8, 8), 0.75, np.float32))
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert target.read_bytes() == before  # the earlier page is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.png"]  # no temporary file left


def test_written_file_has_normal_permissions(tmp_path):
    target = imageio.write_image(tmp_path / "p.png", np.zeros((4, 4), np.float32))
    assert target.stat().st_mode & 0o044  # readable by others (not mkstemp's 0600)


def test_keep_uint8_gives_the_same_page_in_a_quarter_of_the_memory(tmp_path):
    rgb = np.stack([_ramp(), _ramp()[::-1], np.full((24, 32), 7, np.uint8)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(_ramp()).save(tmp_path / "g.png")
    for name in ("a.png", "g.png"):
        f = imageio.read_page(tmp_path / name)
        u = imageio.read_page(tmp_path / name, keep_uint8=True)
        assert u.pixels.dtype == np.uint8 and u.pixels.shape == f.pixels.shape
        np.testing.assert_allclose(u.pixels / np.float32(255), f.pixels, atol=1e-7)
    g16 = np.full((4, 4), 1000, np.uint16)
    Image.fromarray(g16).save(tmp_path / "h.png")
    assert imageio.read_page(tmp_path / "h.png", keep_uint8=True).pixels.dtype == np.float32


def test_cmyk_with_a_broken_colour_profile_falls_back_with_a_warning(tmp_path, caplog):
    im = Image.new("CMYK", (8, 8), (0, 0, 255, 0))  # yellow
    im.save(tmp_path / "c.jpg", quality=100, icc_profile=b"not a colour profile")
    with caplog.at_level("WARNING", logger="MDIM"):
        page = imageio.read_page(tmp_path / "c.jpg")
    np.testing.assert_allclose(page.pixels[4, 4] * 255, [255, 255, 0], atol=8)
    assert any("colour profile" in r.getMessage() for r in caplog.records)
