"""Memory of a real ComfyUI server over many prompts in a row: MDIM workflows against core-only graphs.

Starts a fresh ComfyUI (the integration harness: tiny random-weight checkpoints, the pack linked into a
temporary base directory, CPU) and queues prompts one after another through ``/prompt``, reading the
server's resident memory (``VmRSS`` in ``/proc/<pid>/status``) before any prompt, after a warm-up (every
graph once) and after each prompt. Run once with the shipped MDIM workflows (every node family, cheap
settings: 2 steps, small latents; a new seed and a slightly different setting of each MDIM node per
prompt, so nothing is served from the host's cache), and once with core-only graphs that do the same
kinds of work (inpainting with KSampler, text-to-image, VAE round trips, SamplerCustom, ControlNet,
image ops, outpaint padding), each in its own fresh server. Growth after the warm-up that the core run
does not show would come from MDIM.

    COMFYUI_DIR=/path/to/ComfyUI /path/to/comfy-venv/bin/python benchmarks/real_host_rss.py \
        --port 18510 --prompts 50 [--out benchmarks/results/rss_<version>.json]

Needs the same environment as the integration suite (CONTRIBUTING.md); Linux (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT / "tests" / "integration"), str(ROOT / "tests")]

import conftest as it  # noqa: E402 - the integration suite's set-up helpers
from comfy_harness import run_prompt, start_server, stop_server  # noqa: E402
from test_workflows_live import cheap  # noqa: E402
from workflow_validation import host_version, shipped_workflows, substitute_inputs, ui_to_api  # noqa: E402

# MDIM inputs varied per prompt (the first one a node has), so every prompt runs every node again.
VARY = {"seed": lambda i, v: 1000 + i, "noise_seed": lambda i, v: 1000 + i, "sharpen": lambda i, v: 2.0 + (i % 20) / 10,
        "tolerance": lambda i, v: 0.05 + (i % 20) / 1000, "threshold": lambda i, v: 0.2 + (i % 20) / 100,
        "grow": lambda i, v: 1 + i % 5, "bottom": lambda i, v: 8 * (1 + i % 4), "cfg_rescale": lambda i, v: 0.5 + (i % 20) / 100,
        "tile_size": lambda i, v: 64 + 8 * (i % 8), "grow_mask": lambda i, v: i % 4, "steps": lambda i, v: v,
        "adapter_name": lambda i, v: v, "ring": lambda i, v: 2 + i % 4}  # fmt: skip


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def vary(prompt: dict, i: int) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        inputs = node["inputs"]
        for key in ("seed", "noise_seed"):
            if isinstance(inputs.get(key), int):
                inputs[key] = 1000 + i
        if node["class_type"].startswith("MDIM_"):
            for key, fn in VARY.items():
                if key in inputs and not isinstance(inputs[key], list) and key not in ("seed", "noise_seed"):
                    inputs[key] = fn(i, inputs[key])
                    break
    return prompt


def mdim_prompts(server) -> list[tuple[str, dict]]:
    info = server.object_info()
    out = []
    for path in shipped_workflows():
        prompt = cheap(ui_to_api(json.loads(path.read_text(encoding="utf-8")), info))
        out.append((path.stem, substitute_inputs(prompt, {"steps": 2, "fri_steps": 1})))
    return out


def core_prompts(server) -> list[tuple[str, dict]]:
    """Core-only graphs doing the kinds of work the MDIM workflows do (same checkpoint, images, sizes)."""
    ck = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": it.CKPT_STANDARD}},
          "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "manga", "clip": ["1", 1]}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "color", "clip": ["1", 1]}},
          "2": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_page.png"}},
          "3": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_mask.png"}},
          "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}}}  # fmt: skip
    ks = {"seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0],
          "negative": ["6", 0], "model": ["1", 0]}  # fmt: skip
    inpaint = {**ck,
               "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
               "8": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["7", 0], "mask": ["4", 0]}},
               "9": {"class_type": "KSampler", "inputs": {**ks, "latent_image": ["8", 0], "denoise": 1.0}},
               "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
               "11": {"class_type": "ImageCompositeMasked", "inputs": {"destination": ["2", 0], "source": ["10", 0],
                                                                        "x": 0, "y": 0, "resize_source": False,
                                                                        "mask": ["4", 0]}},
               "20": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "rss_core"}}}  # fmt: skip
    t2i = {**ck,
           "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 96, "batch_size": 1}},
           "9": {"class_type": "KSampler", "inputs": {**ks, "latent_image": ["7", 0], "denoise": 1.0}},
           "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
           "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "rss_core"}}}  # fmt: skip
    custom = {**ck,
              "7": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
              "8": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["7", 0], "mask": ["4", 0]}},
              "12": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": "v_prediction", "zsnr": True}},
              "13": {"class_type": "RescaleCFG", "inputs": {"model": ["12", 0], "multiplier": 0.7}},
              "14": {"class_type": "BasicScheduler", "inputs": {"model": ["13", 0], "scheduler": "simple", "steps": 2, "denoise": 1.0}},
              "15": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
              "9": {"class_type": "SamplerCustom", "inputs": {"model": ["13", 0], "add_noise": True, "noise_seed": 1, "cfg": 7.0,
                                                               "positive": ["5", 0], "negative": ["6", 0], "sampler": ["15", 0],
                                                               "sigmas": ["14", 0], "latent_image": ["8", 0]}},
              "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": ["1", 2]}},
              "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "rss_core"}}}  # fmt: skip
    controlnet = {**inpaint,
                  "30": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": it.CONTROLNET}},
                  "31": {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": ["5", 0], "negative": ["6", 0],
                                                                             "control_net": ["30", 0], "image": ["2", 0],
                                                                             "strength": 0.8, "start_percent": 0.0,
                                                                             "end_percent": 0.8}}}  # fmt: skip
    controlnet["9"] = {"class_type": "KSampler", "inputs": {**ks, "positive": ["31", 0], "negative": ["31", 1],
                                                             "latent_image": ["8", 0], "denoise": 1.0}}  # fmt: skip
    images = {"2": ck["2"], "3": ck["3"], "4": ck["4"],
              "7": {"class_type": "ImageSharpen", "inputs": {"image": ["2", 0], "sharpen_radius": 1, "sigma": 1.0, "alpha": 1.0}},
              "8": {"class_type": "ImageBlur", "inputs": {"image": ["7", 0], "blur_radius": 1, "sigma": 1.0}},
              "9": {"class_type": "ImagePadForOutpaint", "inputs": {"image": ["8", 0], "left": 0, "top": 0, "right": 0,
                                                                    "bottom": 64, "feathering": 0}},
              "10": {"class_type": "ImageInvert", "inputs": {"image": ["9", 0]}},
              "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "rss_core"}}}  # fmt: skip
    roundtrip = {**ck,
                 "7": {"class_type": "VAEEncodeTiled", "inputs": {"pixels": ["2", 0], "vae": ["1", 2], "tile_size": 512,
                                                                  "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}},
                 "10": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
                 "20": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "rss_core"}}}  # fmt: skip
    graphs = [("inpaint", inpaint), ("t2i", t2i), ("samplercustom_zsnr", custom), ("controlnet", controlnet),
              ("image_ops", images), ("vae_roundtrip", roundtrip)]
    return [(name, g) for name, g in graphs]


def core_vary(prompt: dict, i: int) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for node in prompt.values():
        inputs = node["inputs"]
        for key in ("seed", "noise_seed"):
            if key in inputs:
                inputs[key] = 1000 + i
        if node["class_type"] == "ImageSharpen":
            inputs["alpha"] = 0.5 + (i % 20) / 40
        if node["class_type"] == "VAEEncodeTiled":
            inputs["tile_size"] = 512 + 64 * (i % 4)
    return prompt


def run(kind: str, comfyui_dir: Path, port: int, prompts: int, log) -> dict:
    checkpoints = {k: it.build_tiny_checkpoint(comfyui_dir, k) for k in it.CHECKPOINT_KINDS}
    checkpoints["lama"] = it.build_lama_file()
    detector = it.build_detector_file()
    if detector is not None:
        checkpoints["detector"] = detector
    with tempfile.TemporaryDirectory(prefix=f"mdim_rss_{kind}_") as tmp:
        base = Path(tmp) / "base"
        it.prepare_base_dir(base, checkpoints, it.make_test_images())
        server = start_server(comfyui_dir, base, port, python=sys.executable)
        try:
            pid = server.process.pid
            graphs = mdim_prompts(server) if kind == "mdim" else core_prompts(server)
            change = vary if kind == "mdim" else core_vary
            result = {"kind": kind, "graphs": [n for n, _ in graphs], "start_kib": rss_kib(pid), "after": []}
            for j, (_name, g) in enumerate(graphs):  # warm-up: every graph once
                run_prompt(server, change(g, -1 - j), timeout=1800)
            result["warm_kib"] = rss_kib(pid)
            log(f"[{kind}] start {result['start_kib'] / 1024:.0f} MiB, after warm-up {result['warm_kib'] / 1024:.0f} MiB")
            order = [graphs[i % len(graphs)] for i in range(prompts)]
            random.Random(0).shuffle(order)
            t0 = time.monotonic()
            for i, (name, g) in enumerate(order):
                run_prompt(server, change(g, i), timeout=1800)
                result["after"].append({"prompt": i + 1, "graph": name, "kib": rss_kib(pid)})
                if (i + 1) % 10 == 0:
                    log(f"[{kind}] {i + 1} prompts: {result['after'][-1]['kib'] / 1024:.0f} MiB")
            result["seconds"] = time.monotonic() - t0
            return result
        finally:
            stop_server(server)


def summary(res: dict) -> dict:
    after = [a["kib"] for a in res["after"]]
    n = len(after)
    half = after[n // 2 :]
    slope = 0.0
    if len(half) > 1:  # least squares MiB per prompt over the second half
        xs = range(len(half))
        mx, my = sum(xs) / len(half), sum(half) / len(half)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, half)) / sum((x - mx) ** 2 for x in xs) / 1024
    return {
        "start_mib": res["start_kib"] / 1024, "warm_mib": res["warm_kib"] / 1024,
        "at_10_mib": after[min(9, n - 1)] / 1024, "end_mib": after[-1] / 1024, "max_mib": max(after) / 1024,
        "growth_after_warmup_mib": (after[-1] - res["warm_kib"]) / 1024,
        "growth_10_to_end_mib": (after[-1] - after[min(9, n - 1)]) / 1024,
        "slope_second_half_mib_per_prompt": slope, "seconds": res.get("seconds", 0.0), "prompts": n,
    }  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfyui-dir", default=os.environ.get("COMFYUI_DIR"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("MDIM_TEST_PORT", "18510")))
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--kinds", default="mdim,core")
    parser.add_argument("--out", help="write the measurements as JSON")
    args = parser.parse_args(argv)
    if not args.comfyui_dir:
        parser.error("--comfyui-dir (or COMFYUI_DIR) is required")
    comfyui_dir = Path(args.comfyui_dir).resolve()
    version = host_version(comfyui_dir)
    results = {"version": version, "runs": {}}
    for kind in args.kinds.split(","):
        res = run(kind, comfyui_dir, args.port, args.prompts, lambda m: print(m, flush=True))
        res["summary"] = summary(res)
        results["runs"][kind] = res
        print(json.dumps({kind: res["summary"]}, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
