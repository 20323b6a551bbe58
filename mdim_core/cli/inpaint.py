"""``python -m mdim_core inpaint PAGE MASK -o OUT --model DIR``: SGIM inpainting of one page.

Removes what MASK marks (white = repaint) from PAGE and redraws it with a local diffusers-format
Stable Diffusion model (standard or 9-channel inpainting; zero-SNR v-prediction or epsilon), in
two passes: a structure pass on the page shrunk to at most ``--sgi-max-side``, then a
full-resolution refinement of crops around the mask regions. Pixels outside the mask are written back unchanged. The page's
resolution (DPI) and bit depth are kept.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

DEFAULT_PROMPT = "manga, manga style, comic, monochrome"
DEFAULT_NEGATIVE = "color, blurry, lowres, jpeg artifacts, watermark, text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..inpaint.sgim import SGIMConfig

    d = SGIMConfig()
    parser.add_argument("page", help="page image (PNG, JPEG, TIFF, WebP; grayscale or colour)")
    parser.add_argument("mask", help="mask image of the same page: white (>= 50%%) = remove and redraw")
    parser.add_argument("-o", "--output", required=True, help="output image (format from the extension)")
    parser.add_argument("--model", required=True, help="local diffusers-format model folder (unet, vae, text_encoder, tokenizer, scheduler)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="positive prompt (default: %(default)r)")
    parser.add_argument("--negative", default=DEFAULT_NEGATIVE, help="negative prompt (default: %(default)r)")
    parser.add_argument("--steps", type=int, default=d.steps, help="steps of the structure pass (default: %(default)s)")
    parser.add_argument("--cfg", type=float, default=7.0, help="guidance scale (default: %(default)s)")
    parser.add_argument("--cfg-rescale", type=float, default=None, help="CFG rescale phi (default: 0.7 with zero SNR, else 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--sgi-max-side", type=int, default=d.sgi_max_side, help="longest side of the page in the structure pass (default: %(default)s)")
    parser.add_argument("--plan", choices=("halve", "fit"), default=d.plan, help="shrink by halving or fit exactly (default: %(default)s)")
    parser.add_argument("--fri-strength", type=float, default=d.fri_strength, help="denoise of the refinement pass (default: %(default)s)")
    parser.add_argument("--fri-steps", type=int, default=d.fri_steps, help="steps the refinement pass runs (default: %(default)s)")
    parser.add_argument("--run-fri", choices=("auto", "always", "never"), default=d.run_fri, help="refinement pass: auto = only when the page was shrunk (default: %(default)s)")
    parser.add_argument("--grow-mask", type=int, default=d.grow_mask, help="grow the mask by N pixels (default: %(default)s)")
    parser.add_argument("--feather", type=int, default=d.feather, help="blend width inside the mask in pixels (default: %(default)s)")
    parser.add_argument("--context-margin", type=int, default=d.context_margin, help="context pixels around each region, in the pixels of each pass (default: %(default)s)")
    parser.add_argument("--min-crop-side", type=int, default=d.min_crop_side, help="smallest crop side (default: %(default)s)")
    parser.add_argument("--limit-to-panel", action="store_true", help="work panel by panel: each panel shrunk on its own, crops kept inside it")
    parser.add_argument("--flat-fill", choices=("auto", "off"), default=d.flat_fill, help="auto: regions inside flat white paper or solid black are filled with it, without the model (default: %(default)s)")
    parser.add_argument("--prefill", default=None, help="a pre-filled page (e.g. from lama-fill): the structure pass starts from it inside the mask")
    parser.add_argument("--prefill-strength", type=float, default=d.prefill_strength, help="denoise of the structure pass with --prefill (default: %(default)s)")
    parser.add_argument("--scheduler", choices=("auto", "ddim", "euler", "dpmpp_2m"), default="auto", help="sampler (default: the model's own)")
    parser.add_argument("--prediction", choices=("auto", "v_prediction", "epsilon"), default="auto", help="what the UNet predicts (default: the model's scheduler config)")
    parser.add_argument("--zero-snr", choices=("auto", "on", "off"), default="auto", help="zero-terminal-SNR schedule with trailing steps (default: the model's config)")
    parser.add_argument("--allow-epsilon-zero-snr", action="store_true", help="expert: allow zero SNR with an epsilon model")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1, mps (default: %(default)s)")
    parser.add_argument("--fp16", action="store_true", help="run the models in float16 (GPU)")
    parser.add_argument("--tiled-vae-megapixels", type=float, default=4.0, help="tile VAE calls above this size, 0 = never (default: %(default)s)")
    parser.add_argument("--symvae", default=None, help="Symmetric VAE adapter file (.safetensors) to decode with")
    parser.add_argument("--sgi-preview", default=None, help="also write the page with the structure pass pasted in")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..device import resolve_device
    from ..imaging import checks, imageio
    from ..inpaint import diffusers_host, sgim

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    config = sgim.SGIMConfig(
        steps=args.steps,
        fri_steps=args.fri_steps,
        fri_strength=args.fri_strength,
        sgi_max_side=args.sgi_max_side,
        plan=args.plan,
        run_fri=args.run_fri,
        grow_mask=args.grow_mask,
        feather=args.feather,
        context_margin=args.context_margin,
        min_crop_side=args.min_crop_side,
        limit_to_panel=args.limit_to_panel,
        flat_fill=args.flat_fill,
        prefill_strength=args.prefill_strength,
    )
    page = imageio.read_page(args.page)
    channels = page.pixels.shape[2]
    checks.require_memory(page.width * page.height * (12 * channels + 16),  # page copies, mask, output
                          f"inpainting {args.page} ({page.width}x{page.height} px)")
    mask_pixels = imageio.read_page(args.mask).pixels
    image = torch.from_numpy(page.pixels)[None]  # [1, H, W, C]
    mask = torch.from_numpy(mask_pixels.mean(axis=-1))[None]  # [1, h, w]
    prefill = None
    if args.prefill:
        fill = imageio.read_page(args.prefill).pixels
        if fill.shape[:2] != page.pixels.shape[:2]:
            raise ValueError(f"prefill: {args.prefill} is {fill.shape[1]}x{fill.shape[0]} px, expected the page's "
                             f"{page.width}x{page.height}")
        prefill = torch.from_numpy(fill)[None]
    device = resolve_device(args.device)
    dtype = torch.float16 if args.fp16 else torch.float32
    bar = None if args.quiet else tqdm(total=1, unit="step", desc="SGIM", dynamic_ncols=True)

    def on_progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    host = diffusers_host.load_host(
        args.model,
        prompt=args.prompt,
        negative=args.negative,
        cfg=args.cfg,
        cfg_rescale=args.cfg_rescale,
        scheduler=args.scheduler,
        prediction=None if args.prediction == "auto" else args.prediction,
        zero_snr={"auto": None, "on": True, "off": False}[args.zero_snr],
        allow_epsilon_zero_snr=args.allow_epsilon_zero_snr,
        device=device,
        dtype=dtype,
        tiled_vae_megapixels=args.tiled_vae_megapixels,
        symvae_adapters=args.symvae,
        on_progress=on_progress,
    )
    try:
        result = sgim.inpaint(host, image, mask, seed=args.seed, config=config, prefill=prefill)
    finally:
        if bar is not None:
            bar.close()
    imageio.write_image(args.output, result.image[0].numpy(), dpi=page.dpi, bit_depth=page.bit_depth)
    if args.sgi_preview:
        imageio.write_image(args.sgi_preview, result.sgi_preview[0].numpy(), dpi=page.dpi, bit_depth=page.bit_depth)
    if not args.quiet:
        print(
            f"{Path(args.output)}: {sum(len(f.crops) for f in result.frames)} crop(s), {result.passes} pass(es), "
            f"{host.model_calls} model call(s)"
        )
    return 0
