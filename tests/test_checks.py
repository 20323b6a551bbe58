"""Input checks shared by every entry point (mdim_core.imaging.checks) and the device choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdim_core.device import resolve_device
from mdim_core.imaging import checks


def test_image_batch_accepts_the_conventions_and_returns_views():
    img = torch.rand(2, 5, 7, 1)
    out = checks.image_batch(img, "page")
    assert out is img
    rgb = checks.image_batch(img, "page", rgb=True)
    assert rgb.shape == (2, 5, 7, 3) and rgb.data_ptr() == img.data_ptr()  # a view, no copy
    rgba = torch.rand(1, 4, 4, 4)
    assert torch.equal(checks.image_batch(rgba), rgba[..., :3])  # alpha dropped
    single = checks.image_batch(np.zeros((4, 6, 3), np.float32), single=True)
    assert isinstance(single, torch.Tensor) and single.shape == (1, 4, 6, 3)
    assert checks.image_batch(torch.zeros(1, 3, 3, 3, dtype=torch.float16)).dtype == torch.float16


@pytest.mark.parametrize(
    "bad, kwargs, error, message",
    [
        ([[0.5]], {}, TypeError, r"^page: expected an image batch \[B, H, W, C\].*got list"),
        (torch.zeros(4, 6, 3), {}, ValueError, r"^page: expected shape \[B, H, W, C\] with C = 1, 3 or 4, got \(4, 6, 3\)"),
        (torch.zeros(4, 6, 3, 2), {"single": True}, ValueError, r"^page: expected shape \[B, H, W, C\] or \[H, W, C\]"),
        (torch.zeros(1, 0, 6, 3), {}, ValueError, r"^page: empty image batch"),
        (torch.zeros(1, 4, 6, 3), {"min_side": 8}, ValueError, r"^page: expected at least 8x8 pixels, got 6x4"),
        (torch.zeros(1, 4, 6, 3, dtype=torch.uint8), {}, ValueError, r"^page: expected float pixels in 0\.\.1, got dtype"),
        (torch.full((1, 2, 2, 3), float("inf")), {}, ValueError, r"^page: contains 12 NaN or infinite value\(s\)"),
    ],
)
def test_image_batch_errors_name_the_input_and_what_was_expected(bad, kwargs, error, message):
    with pytest.raises(error, match=message):
        checks.image_batch(bad, "page", **kwargs)


def test_page_array_accepts_gray_rgb_rgba_float_and_uint8():
    u8 = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    out = checks.page_array(u8, "scan")
    assert out.dtype == np.float32 and out.shape == (2, 4, 3)
    np.testing.assert_allclose(out * 255, u8, atol=1e-4)
    assert checks.page_array(u8, keep_uint8=True) is u8
    gray = np.zeros((3, 5), np.float32)
    view = checks.page_array(gray)
    assert view.shape == (3, 5, 1) and np.shares_memory(view, gray)
    assert checks.page_array(np.zeros((3, 5, 4), np.float64)).dtype == np.float32
    np.testing.assert_array_equal(checks.float_pixels(np.array([0, 255], np.uint8)), [0.0, 1.0])


@pytest.mark.parametrize(
    "bad, kwargs, error, message",
    [
        (torch.zeros(3, 3), {}, TypeError, r"^scan\.png: expected a numpy array \[H, W\] or \[H, W, C\], got Tensor"),
        (np.zeros((3, 3, 2), np.float32), {}, ValueError, r"^scan\.png: expected shape \[H, W\] or \[H, W, C\]"),
        (np.zeros((2, 3, 3, 3), np.float32), {}, ValueError, r"^scan\.png: expected shape"),
        (np.zeros((0, 3), np.float32), {}, ValueError, r"^scan\.png: empty page"),
        (np.zeros((3, 3), np.uint16), {}, ValueError, r"^scan\.png: expected float \(0\.\.1\) or uint8 \(0\.\.255\) pixels, got dtype uint16"),
        (np.array([[0.5, np.nan]], np.float32), {"finite": True}, ValueError, r"^scan\.png: contains 1 NaN or infinite value\(s\); expected finite"),
    ],
)
def test_page_array_errors_name_the_input_and_what_was_expected(bad, kwargs, error, message):
    with pytest.raises(error, match=message):
        checks.page_array(bad, "scan.png", **kwargs)
    assert checks.page_array(np.array([[0.5, np.nan]], np.float32)).shape == (1, 2, 1)  # finite is asked for


def test_require_memory_says_size_and_limit_before_the_work():
    checks.require_memory(10, "cleanup of a.png (4x4 px)", available=100)
    with pytest.raises(MemoryError, match=r"^cleanup of a\.png \(4x4 px\) needs about 2\.0 GiB of memory but only 1\.0 GiB is free"):
        checks.require_memory(2 * 2**30, "cleanup of a.png (4x4 px)", available=2**30)
    free = checks.available_memory()
    assert free is None or free > 0


def test_resolve_device_auto_and_explicit_names(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^device: 'gpu0' is not a torch device; expected one of auto, cpu"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match=r"^device: 'cuda:3' is not available on this machine; expected one of auto, cpu"):
        resolve_device("cuda:3")
    with pytest.raises(TypeError, match="device"):
        resolve_device(0)


def test_resolve_device_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2' is not available.*cuda, cuda:0, cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device("mps") == torch.device("mps")
