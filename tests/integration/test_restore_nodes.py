"""MDIM Scan Cleanup inside a real ComfyUI: in-process node runs and the restoration workflows via /prompt.

Needs COMFYUI_DIR (skipped otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration

RESTORE_WORKFLOWS = ("mdim_restore_scan_cleanup.json", "mdim_restore_symvae.json", "mdim_restore_text_removal.json")
DEFAULTS = dict(gray="auto", remove_background=True, levels="thesis", black_point=90.0, white_point=190.0,
                sharpen=3.0, dpi=0.0, bleed_through=0.0, despeckle=0, deskew=False)


def _batch(test_images, name="mdim_example_old_scan.png") -> torch.Tensor:
    arr = test_images[name].astype(np.float32) / 255.0
    return torch.from_numpy(np.stack([arr, arr[:, ::-1].copy()]))  # two pages


def test_node_matches_core_page_by_page_and_keeps_input(inprocess_comfy, test_images):
    from mdim_pack_under_test.mdim_core.restore import cleanup

    image = _batch(test_images)
    before = image.clone()
    (out,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)
    assert torch.equal(image, before)  # the input IMAGE is untouched
    assert out.shape == (2, *image.shape[1:3], 3) and out.dtype == torch.float32
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])  # gray in 3 channels
    for i in range(2):
        expect = cleanup.clean_page(image[i].numpy(), cleanup.CleanupSettings())
        assert np.array_equal(out[i, ..., 0].numpy(), expect)
    # the yellowed paper of the test scan becomes white
    page = test_images["mdim_example_page.png"][..., 0] > 250
    assert (out[0, ..., 0].numpy()[page] > 0.98).mean() > 0.95


def test_node_options_and_bad_input(inprocess_comfy, test_images):
    image = _batch(test_images)[:1]
    (plain,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **{**DEFAULTS, "levels": "off", "sharpen": 0.0})
    (points,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **{**DEFAULTS, "levels": "points",
                                                                          "black_point": 20.0, "white_point": 240.0})
    assert not torch.equal(plain, points)
    (rgba,) = inprocess_comfy.run("MDIM_ScanCleanup", image=torch.cat([image, torch.ones_like(image[..., :1])], -1),
                                  **DEFAULTS)
    (rgb,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)
    assert torch.equal(rgba, rgb)  # alpha dropped
    with pytest.raises(ValueError, match="black_point"):
        inprocess_comfy.run("MDIM_ScanCleanup", image=image, **{**DEFAULTS, "black_point": 200.0, "white_point": 100.0})
    with pytest.raises(ValueError, match="image"):
        inprocess_comfy.run("MDIM_ScanCleanup", image=image[:, :0], **DEFAULTS)
    nan = image.clone()
    nan[0, 3, 4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^image: contains 1 NaN or infinite value\(s\); expected finite values in 0\.\.1"):
        inprocess_comfy.run("MDIM_ScanCleanup", image=nan, **DEFAULTS)


def test_schema_is_served(comfy_server):
    info = comfy_server.object_info()["MDIM_ScanCleanup"]
    assert info["category"] == "MDIM/restore" and info["display_name"] == "MDIM Scan Cleanup"
    for name, spec in info["input"]["required"].items():
        assert spec[1].get("tooltip"), name


@pytest.mark.parametrize("name", RESTORE_WORKFLOWS)
def test_restoration_workflows_run(name, workflow_prompt, comfy_run, comfy_images, test_images):
    prompt = workflow_prompt(name, steps=2, fri_steps=1)
    outputs = comfy_run(prompt, timeout=900)
    images = comfy_images(outputs)
    assert images, f"{name} produced no image"
    scan = test_images["mdim_example_old_scan.png"]
    for image in images:
        assert image.shape[:2] == scan.shape[:2]
    if name == "mdim_restore_scan_cleanup.json":
        from mdim_core.restore import cleanup

        expect = cleanup.clean_page(scan.astype(np.float32) / 255.0)
        got = images[0][..., 0].astype(np.float32) / 255.0
        assert np.abs(got - expect).max() <= 1 / 255 + 1e-6


def test_progress_reaches_the_batch_size_and_cancel_stops_the_node(inprocess_comfy, test_images, progress_spy):
    import comfy.model_management

    image = torch.cat([_batch(test_images)[:, :96, :80]] * 2)  # four small pages
    (out,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)
    assert out.shape[0] == 4
    assert [(v, t) for v, t, _ in progress_spy.reported] == [(1, 4), (2, 4), (3, 4), (4, 4)]  # one per page
    assert progress_spy.shown[-1][:2] == (4, 4)  # whatever the host's throttling, the user sees the bar full

    progress_spy.reported.clear()
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert progress_spy.reported == []  # stopped before the first page was cleaned

    def cancel(value):
        comfy.model_management.interrupt_current_processing(True)  # the user presses Cancel after page 1

    progress_spy.on_report = cancel
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)
    finally:
        comfy.model_management.interrupt_current_processing(False)
        progress_spy.on_report = None
    assert [(v, t) for v, t, _ in progress_spy.reported] == [(1, 4)]  # stopped between pages, not at the end
    (again,) = inprocess_comfy.run("MDIM_ScanCleanup", image=image, **DEFAULTS)  # a later run is not cancelled
    assert torch.equal(again, out)


def test_16bit_scan_through_core_load_image_and_the_warning_of_each_host(inprocess_comfy, test_images, tmp_path,
                                                                         caplog):
    """ComfyUI's Load Image before 0.21 (Pillow) whitens 16-bit grayscale scans; newer hosts (PyAV) read them.
    On the old hosts the node warns with the cause and the fix; on newer ones the page is cleaned like its
    8-bit twin and nothing is said."""
    import importlib
    from pathlib import Path

    import folder_paths
    from PIL import Image

    compat = importlib.import_module("mdim_pack_under_test.nodes.host_compat")
    comfy_nodes = importlib.import_module("nodes")
    assert Path(comfy_nodes.__file__).resolve().parent == Path(inprocess_comfy.comfy_dir).resolve()
    version = importlib.import_module("comfyui_version").__version__
    assert compat.HOST_VERSION == tuple(int(v) for v in version.split(".")[:3])
    assert compat.LOAD_IMAGE_WHITENS_16_BIT == (compat.HOST_VERSION < (0, 21, 0))
    scan8 = test_images["mdim_example_old_scan.png"][:96, :80, 0]
    assert (scan8 < 128).mean() > 0.2
    for ext in ("png", "tif"):
        name = f"mdim_scan16.{ext}"
        Image.fromarray(scan8.astype(np.uint16) * 257).save(Path(folder_paths.get_input_directory()) / name)
        assert Image.open(Path(folder_paths.get_input_directory()) / name).mode == "I;16"
        loaded, _ = comfy_nodes.LoadImage().load_image(name)
        if compat.LOAD_IMAGE_WHITENS_16_BIT:
            # the host's loader whitens the 16-bit scan: only its pure-black pixels (0 < 256) keep any ink
            assert (loaded == 1.0).all(-1).float().mean() > 0.995
            assert torch.equal(loaded[0, ..., 0] < 1.0, torch.from_numpy(scan8 == 0))
        else:  # read at full precision: the 8-bit scan's values
            assert torch.allclose(loaded[0], torch.from_numpy(scan8 / 255.0).float()[..., None].expand(-1, -1, 3),
                                  atol=1e-6)

        before = loaded.clone()
        caplog.clear()
        with caplog.at_level("WARNING", logger="MDIM"):
            (out,) = inprocess_comfy.run("MDIM_ScanCleanup", image=loaded, **DEFAULTS)
        assert torch.equal(loaded, before)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        if compat.LOAD_IMAGE_WHITENS_16_BIT:
            assert (out == 1.0).float().mean() > 0.99  # pixels are not altered
            assert len(warnings) == 1 and "almost all white" in warnings[0] and "I;16" in warnings[0]
            assert f"before 0.21 (this is ComfyUI {version})" in warnings[0]
            assert "convert the scan to 8-bit" in warnings[0] and "python -m mdim_core restore" in warnings[0]
        else:
            (twin,) = inprocess_comfy.run(
                "MDIM_ScanCleanup", image=torch.from_numpy(scan8 / 255.0).float()[None, ..., None].expand(-1, -1, -1, 3),
                **DEFAULTS)  # fmt: skip
            assert torch.equal(out, twin) and warnings == []

    # a white page gets a warning on every host (the 16-bit cause named only where it applies)
    caplog.clear()
    with caplog.at_level("WARNING", logger="MDIM"):
        inprocess_comfy.run("MDIM_ScanCleanup", image=torch.ones(1, 32, 24, 3), **DEFAULTS)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "page(s) 1 of 1 are all or almost all white" in warnings[0]
    assert ("I;16" in warnings[0]) == compat.LOAD_IMAGE_WHITENS_16_BIT

    # a flat gray page gets the generic warning; a real page none
    caplog.clear()
    with caplog.at_level("WARNING", logger="MDIM"):
        inprocess_comfy.run("MDIM_ScanCleanup", image=torch.full((2, 32, 24, 3), 0.5), **DEFAULTS)
        inprocess_comfy.run("MDIM_ScanCleanup", image=_batch(test_images)[:, :96, :80], **DEFAULTS)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "page(s) 1, 2 of 2 are one flat value (0.5, 0.5)" in warnings[0]
