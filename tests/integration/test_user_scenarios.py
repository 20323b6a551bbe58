"""What a demanding user does with the pack in a real ComfyUI, through the HTTP API like the editor.

Pages and masks are uploaded with ``/upload/image`` (odd sizes, grayscale, RGBA, JPEG masks, masks of
another size), graphs are queued with ``/prompt``, results are read back through ``/view`` as the saved
8-bit PNGs. Checked whatever the (random) weights: the output has the input's size, every pixel outside
the mask equals the 8-bit input, errors arrive as ``execution_error`` messages naming the input and the
server keeps working, core branches next to our nodes give bit-identical results, a cancel stops a run,
and zero-SNR sampling stays finite with every common sampler/scheduler pair.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid

import numpy as np
import pytest
from comfy_harness import PromptError

PAGE_HW = (213, 157)  # odd, not multiples of 8
FAST = {"steps": 2, "fri_steps": 1}
NO_ADAPTERS = "(none: untrained, decodes like the VAE)"


# --------------------------------------------------------------------------- helpers


def upload(server, name: str, array: np.ndarray, fmt: str = "PNG", **save_args) -> str:
    """Upload an image like the editor's Load Image does (multipart POST /upload/image); its name."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save_args)
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="image"; filename="{name}"\r\n'.encode(),
            b"Content-Type: application/octet-stream\r\n\r\n",
            buf.getvalue(),
            f"\r\n--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="overwrite"\r\n\r\ntrue',
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    request = urllib.request.Request(
        server.url + "/upload/image", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as resp:
        answer = json.loads(resp.read())
    assert answer["name"] == name, answer
    return answer["name"]


def post(server, path: str, payload: dict) -> bytes:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as resp:
        return resp.read()


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def changed(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    assert out.shape[:2] == ref.shape[:2], (out.shape, ref.shape)
    return (out[..., :3] != ref[..., :3]).any(-1)


def sgim_prompt(workflow_prompt, page: str, mask: str, **overrides) -> dict:
    """The shipped text-removal workflow on an uploaded page and mask file (steps kept tiny)."""
    prompt = workflow_prompt("mdim_sgim_text_removal.json", **{**FAST, **overrides})
    prompt["2"]["inputs"]["image"] = page
    prompt["3"]["inputs"]["image"] = mask
    return prompt


@pytest.fixture(scope="module")
def manga(comfy_server):
    """A generated manga page of odd size and its text mask, uploaded in the usual file variants."""
    from mdim_core.synth import generate_page

    synth = generate_page(7, size=PAGE_HW)
    page = np.round(synth.page * 255).astype(np.uint8)
    mask = synth.masks["text"]
    assert 100 < mask.sum() < 0.2 * mask.size
    white = (mask * 255).astype(np.uint8)
    rgba = np.dstack([rgb(page), np.full(page.shape, 255, np.uint8)])
    files = {
        "page_rgb": upload(comfy_server, "us_page_rgb.png", rgb(page)),
        "page_gray": upload(comfy_server, "us_page_gray.png", page),  # mode L
        "page_rgba": upload(comfy_server, "us_page_rgba.png", rgba),
        "page_flip": upload(comfy_server, "us_page_flip.png", rgb(page[::-1])),
        "mask_png": upload(comfy_server, "us_mask.png", white),
        "mask_rgba": upload(comfy_server, "us_mask_rgba.png", np.dstack([rgb(white), np.full(page.shape, 255, np.uint8)])),
        "mask_jpeg": upload(comfy_server, "us_mask.jpg", white, fmt="JPEG", quality=90),
        "mask_other_size": upload(comfy_server, "us_mask_big.png", np.kron(white, np.ones((2, 2), np.uint8))),
        "mask_flip": upload(comfy_server, "us_mask_flip.png", white[::-1].copy()),
        "mask_empty": upload(comfy_server, "us_mask_empty.png", np.zeros_like(white)),
    }
    return page, mask, files


# --------------------------------------------------------------------------- SGIM through /prompt


@pytest.mark.parametrize(
    "page_key,mask_key",
    [("page_rgb", "mask_png"), ("page_gray", "mask_rgba"), ("page_rgba", "mask_jpeg"), ("page_rgb", "mask_other_size")],
)
def test_page_and_mask_file_variants_keep_everything_outside_the_mask(
    comfy_server, manga, workflow_prompt, comfy_run, comfy_images, page_key, mask_key
):
    """Outside the mask the result is what core Load Image gave for the page file, bit for bit; that is the
    file itself, except for grayscale files on ComfyUI 0.21+ whose Load Image (PyAV) converts gray to RGB
    with an error of one level on about half the gray values (verified on 0.28.0; 0.8.0 is exact)."""
    page, mask, files = manga
    prompt = sgim_prompt(workflow_prompt, files[page_key], files[mask_key], flat_fill="off")
    prompt["90"] = {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "us_loaded"}}
    outputs = _by_node(comfy_run(prompt), comfy_images)
    (result,), (preview,), (loaded,) = outputs["20"], outputs["21"], outputs["90"]
    assert result.shape == preview.shape == loaded.shape == (*PAGE_HW, 3)
    off_by = np.abs(loaded.astype(int) - rgb(page)).max()
    if page_key == "page_gray" and comfy_server.version() >= (0, 21, 0):
        assert off_by == 1  # the host's gray -> RGB conversion, not ours
    else:
        assert off_by == 0
    diff = changed(result, loaded)
    assert not (diff & ~mask).any()  # bit-identical to the loaded page outside the mask
    assert diff[mask].mean() > 0.9  # and the mask really was repainted


def test_empty_mask_returns_the_page_without_any_model_call(inprocess_comfy, inprocess_checkpoint, monkeypatch):
    import comfy.sample
    import torch

    model, clip, vae = inprocess_checkpoint

    def refuse(*args, **kwargs):
        raise AssertionError("the model or VAE was called for an empty mask")

    monkeypatch.setattr(comfy.sample, "sample", refuse)
    monkeypatch.setattr(vae, "encode", refuse)
    monkeypatch.setattr(vae, "decode", refuse)
    image = torch.rand(2, 37, 29, 3)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    node = inprocess_comfy.nodes["MDIM_SGIMInpaint"]
    defaults = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
    out, preview = inprocess_comfy.run(
        node, **{**defaults, "model": model, "positive": cond, "negative": cond, "vae": vae,
                 "image": image, "mask": torch.zeros(1, 64, 64)}
    )  # fmt: skip
    assert torch.equal(out, image) and torch.equal(preview, image)


@pytest.mark.parametrize("masks", [1, 2])
def test_batch_of_two_pages_with_one_or_two_masks(manga, workflow_prompt, comfy_run, comfy_images, masks):
    page, mask, files = manga
    prompt = sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_png"])
    prompt["30"] = {"class_type": "LoadImage", "inputs": {"image": files["page_flip"]}}
    prompt["31"] = {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["30", 0]}}
    prompt["10"]["inputs"]["image"] = ["31", 0]
    if masks == 2:
        prompt["32"] = {"class_type": "LoadImage", "inputs": {"image": files["mask_flip"]}}
        prompt["33"] = {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["32", 0]}}
        prompt["4"]["inputs"]["image"] = ["33", 0]
    saved = comfy_images(comfy_run(prompt))[:2]  # SaveImage first, then the preview
    for out, ref, m in zip(saved, (page, page[::-1]), (mask, mask if masks == 1 else mask[::-1])):
        diff = changed(out, rgb(ref))
        assert not (diff & ~m).any()
        assert diff[m].mean() > 0.9


def test_three_masks_for_two_pages_is_an_execution_error_and_the_server_goes_on(
    manga, workflow_prompt, comfy_run, comfy_images
):
    page, mask, files = manga
    prompt = sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_png"])
    prompt["30"] = {"class_type": "LoadImage", "inputs": {"image": files["page_flip"]}}
    prompt["31"] = {"class_type": "ImageBatch", "inputs": {"image1": ["2", 0], "image2": ["30", 0]}}
    prompt["10"]["inputs"]["image"] = ["31", 0]
    prompt["32"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": 3}}
    prompt["4"]["inputs"]["image"] = ["32", 0]
    with pytest.raises(PromptError) as err:
        comfy_run(prompt)
    text = str(err.value)
    assert "execution_error" in text and "mask: batch of 3 masks for 2 images" in text
    assert "expected 1 (shared) or 2" in text
    # the next prompt runs
    out = comfy_images(comfy_run(sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_empty"])))[0]
    assert np.array_equal(out, rgb(page))


@pytest.mark.parametrize("hints", [2, 4])
def test_controlnet_hint_batch_that_fits_no_page_count_is_an_execution_error(
    manga, workflow_prompt, comfy_run, comfy_images, hints
):
    """Three pages with a ControlNet hint batch of 2 (or 4): which hint belongs to which page cannot be guessed.
    The run fails with an execution error naming both sizes; a hint batch of 1 or 3 runs; the server goes on."""
    page, mask, files = manga

    def prompt_with(n_hints: int) -> dict:
        prompt = workflow_prompt("mdim_sgim_controlnet.json", **FAST, flat_fill="off")
        prompt["2"]["inputs"]["image"] = files["page_rgb"]
        prompt["3"]["inputs"]["image"] = files["mask_png"]
        prompt["9"]["inputs"]["image"] = files["page_rgb"]
        prompt["30"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["2", 0], "amount": 3}}
        prompt["10"]["inputs"]["image"] = ["30", 0]
        prompt["31"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["9", 0], "amount": n_hints}}
        prompt["11"]["inputs"]["image"] = ["31", 0]
        return prompt

    with pytest.raises(PromptError) as err:
        comfy_run(prompt_with(hints))
    failure = err.value.error
    assert failure is not None and failure["node_type"] == "MDIM_SGIMInpaint", str(err.value)
    assert failure["exception_type"] in ("ValueError", "builtins.ValueError"), failure
    assert f"a batch of {hints} for 3 page(s)" in failure["exception_message"], failure
    assert "hint" in failure["exception_message"], failure
    for good in (1, 3):  # one shared hint, or one per page: runs, exact outside the mask on every page
        saved = comfy_images(comfy_run(prompt_with(good)))[:3]
        for out in saved:
            diff = changed(out, rgb(page))
            assert not (diff & ~mask).any() and diff[mask].mean() > 0.9


@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (8, 8)])
def test_strips_and_tiny_images(comfy_server, workflow_prompt, comfy_run, comfy_images, shape):
    """1-pixel strips and tiny pages through Load Image and the SGIM node: same size out, exact outside the mask.

    The mask is uploaded as an RGB file and as a grayscale file. ComfyUI 0.21+ (PyAV) cannot read grayscale
    PNGs under 16 px on a side (verified on 0.28.0: ``av.error.ArgumentError`` in Load Image, before any
    node of ours runs); there the grayscale file must fail in Load Image and the server go on."""
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = np.zeros(shape, bool)
    mask[tuple(slice(n // 3, max(n // 3 + 1, 2 * n // 3)) for n in shape)] = True
    name = f"us_strip_{shape[0]}x{shape[1]}"
    page_file = upload(comfy_server, name + ".png", image)
    rgb_mask = upload(comfy_server, name + "_mask_rgb.png", rgb((mask * 255).astype(np.uint8)))
    gray_mask = upload(comfy_server, name + "_mask.png", (mask * 255).astype(np.uint8))
    for mask_file in (rgb_mask, gray_mask):
        prompt = sgim_prompt(workflow_prompt, page_file, mask_file, flat_fill="off")
        if mask_file == gray_mask and comfy_server.version() >= (0, 21, 0) and min(shape) < 16:
            with pytest.raises(PromptError) as err:
                comfy_run(prompt)
            failure = err.value.error
            assert failure["node_type"] == "LoadImage" and failure["node_id"] == "3", failure
            assert failure["exception_type"].startswith("av."), failure
            continue
        out, preview = comfy_images(comfy_run(prompt))
        assert out.shape == preview.shape == image.shape
        diff = changed(out, image)
        assert not (diff & ~mask).any() and diff[mask].any()


# --------------------------------------------------------------------------- sharing and caching


def _core_graph(seed: int, page: str, mask: str) -> dict:
    """Core inpainting (VAEEncode + SetLatentNoiseMask + KSampler) and text-to-image on the tiny checkpoint."""
    ks = {"steps": 2, "cfg": 7.0, "positive": ["5", 0], "negative": ["6", 0], "denoise": 1.0, "model": ["1", 0]}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15_mdim_zsnr_vpred.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": page}},
        "3": {"class_type": "LoadImage", "inputs": {"image": mask}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "manga", "clip": ["1", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "color", "clip": ["1", 1]}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["7", 0], "mask": ["4", 0]}},
        "9": {"class_type": "KSampler", "inputs": {**ks, "seed": seed, "sampler_name": "euler", "scheduler": "simple", "latent_image": ["8", 0]}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "us_core_inpaint"}},
        "12": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "13": {"class_type": "KSampler", "inputs": {**ks, "seed": seed, "sampler_name": "dpmpp_2m", "scheduler": "karras", "latent_image": ["12", 0]}},
        "14": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["1", 2]}},
        "15": {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "us_core_t2i"}},
    }  # fmt: skip


def _with_our_nodes(prompt: dict, seed: int, sgim_inputs: dict) -> dict:
    """Our nodes on the same checkpoint, conditionings, page and mask as the core branches."""
    prompt = dict(prompt)
    sgim = {**sgim_inputs, **FAST, "model": ["40", 0], "positive": ["5", 0], "negative": ["6", 0], "vae": ["1", 2],
            "image": ["2", 0], "mask": ["4", 0], "seed": seed, "symvae": ["41", 0]}  # fmt: skip
    prompt.update({
        "40": {"class_type": "MDIM_ZeroSNRModel", "inputs": {"model": ["1", 0], "prediction": "v_prediction", "cfg_rescale": 0.7, "allow_epsilon_zero_snr": False}},
        "41": {"class_type": "MDIM_SymVAELoader", "inputs": {"vae": ["1", 2], "adapter_name": NO_ADAPTERS, "allow_other_vae_weights": False}},
        "42": {"class_type": "MDIM_SGIMInpaint", "inputs": sgim},
        "43": {"class_type": "MDIM_SGIMInpaint", "inputs": {k: v for k, v in {**sgim, "model": ["1", 0]}.items() if k != "symvae"}},
        "44": {"class_type": "MDIM_SymVAEEncode", "inputs": {"symvae": ["41", 0], "image": ["2", 0], "mask": ["4", 0], "set_noise_mask": True}},
        "45": {"class_type": "KSampler", "inputs": {"model": ["40", 0], "seed": seed, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0], "negative": ["6", 0], "latent_image": ["44", 0], "denoise": 1.0}},
        "46": {"class_type": "MDIM_SymVAEDecode", "inputs": {"symvae": ["41", 0], "samples": ["45", 0], "fill": "base", "paste_outside_mask": True, "tile_size": 1024}},
    })  # fmt: skip
    for node, source in (("50", "42"), ("51", "43"), ("52", "46")):
        prompt[node] = {"class_type": "SaveImage", "inputs": {"images": [source, 0], "filename_prefix": "us_ours"}}
    return prompt


def _by_node(outputs: dict, comfy_images) -> dict:
    return {node: comfy_images({node: entry}) for node, entry in outputs.items()}


def test_core_branches_are_bit_identical_with_and_without_our_nodes(
    manga, workflow_prompt, comfy_run, comfy_images
):
    page, mask, files = manga
    sgim_inputs = workflow_prompt("mdim_sgim_text_removal.json")["10"]["inputs"]
    core = _by_node(comfy_run(_core_graph(11, files["page_rgb"], files["mask_png"])), comfy_images)
    # our nodes run on the shared MODEL/VAE/CONDITIONING/IMAGE (core branches at another seed) ...
    comfy_run(_with_our_nodes(_core_graph(12, files["page_rgb"], files["mask_png"]), 3, sgim_inputs))
    # ... then the core branches recompute next to them with the first seed: same bytes as without them
    both = _by_node(
        comfy_run(_with_our_nodes(_core_graph(11, files["page_rgb"], files["mask_png"]), 4, sgim_inputs)), comfy_images
    )
    for node in ("11", "15"):
        assert np.array_equal(core[node][0], both[node][0]), node
    for node in ("50", "51", "52"):
        diff = changed(both[node][0], rgb(page))
        assert not (diff & ~mask).any(), node


# --------------------------------------------------------------------------- cancel


def test_interrupt_stops_a_long_sgim_run_and_the_server_goes_on(comfy_server, manga, workflow_prompt, comfy_run, comfy_images):
    page, mask, files = manga
    prompt = sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_png"], steps=1000, seed=987)
    started = comfy_server.log_text().count("[MDIM] SGIM:")  # the node logs its plan before sampling
    answer = comfy_server.post_json("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 120
    while comfy_server.log_text().count("[MDIM] SGIM:") == started:
        assert time.monotonic() < deadline, "the SGIM run did not start"
        assert prompt_id not in comfy_server.get_json(f"/history/{prompt_id}"), "the run ended before sampling"
        time.sleep(0.2)
    time.sleep(1.0)  # well inside the 1000 steps
    post(comfy_server, "/interrupt", {})
    stopped = time.monotonic()
    while prompt_id not in comfy_server.get_json(f"/history/{prompt_id}"):
        assert time.monotonic() - stopped < 60, "the run did not stop after /interrupt"
        time.sleep(0.2)
    status = comfy_server.get_json(f"/history/{prompt_id}")[prompt_id]["status"]
    assert "execution_interrupted" in [m[0] for m in status["messages"]]
    out = comfy_images(comfy_run(sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_png"], seed=988)))[0]
    assert not (changed(out, rgb(page)) & ~mask).any()


# --------------------------------------------------------------------------- zero SNR with core KSampler


@pytest.mark.parametrize("scheduler", ["simple", "normal", "karras"])
def test_zero_snr_ksampler_stays_finite(comfy_server, workflow_prompt, comfy_run, scheduler):
    from safetensors.torch import load_file

    for sampler in ("euler", "dpmpp_2m", "ddim", "uni_pc"):
        prompt = workflow_prompt("mdim_zero_snr_ksampler.json", steps=3, seed=5, sampler_name=sampler, scheduler=scheduler)
        prompt["5"]["inputs"].update(width=64, height=64, batch_size=1)
        prefix = f"us_zsnr/{scheduler}_{sampler}_{uuid.uuid4().hex[:8]}"
        prompt["30"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": prefix}}
        comfy_run(prompt)
        files = sorted((comfy_server.base_dir / "output").glob(prefix + "*.latent"))
        assert files, prefix
        latent = load_file(str(files[-1]))["latent_tensor"]
        assert latent.shape == (1, 4, 8, 8)
        assert bool(latent.isfinite().all()), (scheduler, sampler)
        assert 0 < float(latent.abs().max()) < 1e3, (scheduler, sampler)


# --------------------------------------------------------------------------- restoration inputs


def test_scan_cleanup_on_grayscale_rgba_and_16_bit_like_scans(inprocess_comfy, manga):
    import torch

    page = torch.from_numpy(manga[0]).float() / 255
    old = (page[None, ..., None] * torch.tensor([0.95, 0.9, 0.72]) + 0.04).clamp(0, 1)
    node = inprocess_comfy.nodes["MDIM_ScanCleanup"]
    defaults = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
    variants = {
        "rgb": old,
        "gray": old.mean(-1, keepdim=True),
        "rgba": torch.cat([old, torch.ones_like(old[..., :1])], -1),
        "16-bit-like": torch.round(old * 65535) / 65535,
    }
    results = {}
    for name, image in variants.items():
        before = image.clone()
        (out,) = inprocess_comfy.run(node, **{**defaults, "image": image})
        assert torch.equal(image, before), name
        assert out.shape == (1, *PAGE_HW, 3) and bool(out.isfinite().all()), name
        results[name] = out
    # RGBA: the alpha channel is dropped, the page is the same
    assert torch.equal(results["rgba"], results["rgb"])
    # paper comes out white and ink black
    ink = torch.from_numpy(manga[0] < 40)
    paper = torch.from_numpy(manga[0] > 240)
    for name, out in results.items():
        assert float(out[0][paper].mean()) > 0.9 and float(out[0][ink].mean()) < 0.2, name


def test_symvae_loader_lists_none_and_refuses_a_wrong_adapter_file(
    comfy_server, comfy_add_model_file, workflow_prompt, comfy_run, comfy_images, manga, tmp_path
):
    import torch
    from safetensors.torch import save_file

    options = comfy_server.get_json("/object_info/MDIM_SymVAELoader")["MDIM_SymVAELoader"]["input"]["required"]
    assert NO_ADAPTERS in options["adapter_name"][1]["options"]
    save_file({"foo.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file" * 4)
    expected = {
        "us_other.safetensors": "is not a Symmetric VAE adapter file",
        "us_broken.safetensors": "is not a readable safetensors file",
    }
    comfy_add_model_file("mdim", "us_other.safetensors", tmp_path / "other.safetensors")
    comfy_add_model_file("mdim", "us_broken.safetensors", tmp_path / "broken.safetensors")
    for name, message in expected.items():
        prompt = workflow_prompt("mdim_symvae_restore_scan.json")
        prompt["2"]["inputs"]["adapter_name"] = name
        prompt["3"]["inputs"]["image"] = manga[2]["page_rgb"]
        with pytest.raises(PromptError) as err:
            comfy_run(prompt)
        assert "execution_error" in str(err.value) and name in str(err.value) and message in str(err.value)
    prompt = workflow_prompt("mdim_symvae_restore_scan.json")
    prompt["3"]["inputs"]["image"] = manga[2]["page_rgb"]
    assert comfy_images(comfy_run(prompt))[0].shape == (*PAGE_HW, 3)


def test_rerun_with_a_changed_seed_and_back_gives_the_same_bytes(manga, workflow_prompt, comfy_run, comfy_images):
    page, mask, files = manga
    runs = [
        comfy_images(comfy_run(sgim_prompt(workflow_prompt, files["page_rgb"], files["mask_png"], seed=seed)))[0]
        for seed in (21, 22, 21)  # the middle run evicts the first from the host's cache
    ]
    assert np.array_equal(runs[0], runs[2])
    assert not np.array_equal(runs[0][mask], runs[1][mask])
    for out in runs:
        assert not (changed(out, rgb(page)) & ~mask).any()
