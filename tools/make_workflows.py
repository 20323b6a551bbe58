"""Write the zero-SNR sampling workflows shipped in ``workflows/``.

python tools/make_workflows.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_builder import Graph, Node  # noqa: E402

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
CHECKPOINT = "sd15_mdim_zsnr_vpred.safetensors"
POSITIVE = "manga, manga style, comic, monochrome, 1girl, school uniform, screentone, speech bubble"
NEGATIVE = "color, blurry, lowres, jpeg artifacts, watermark, text"


def _common(g: Graph):
    ckpt = g.add(
        Node(
            1,
            "CheckpointLoaderSimple",
            None,
            [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
            [CHECKPOINT],
        )
    )
    zsnr = g.add(
        Node(
            2,
            "MDIM_ZeroSNRModel",
            None,
            [("MODEL", "MODEL")],
            ["v_prediction", 0.7, False],
            inputs=[("model", "MODEL")],
            title="MDIM Zero-SNR Model",
        )
    )
    pos = g.add(
        Node(
            3,
            "CLIPTextEncode",
            None,
            [("CONDITIONING", "CONDITIONING")],
            [POSITIVE],
            inputs=[("clip", "CLIP")],
            title="Positive prompt",
        )
    )
    neg = g.add(
        Node(
            4,
            "CLIPTextEncode",
            None,
            [("CONDITIONING", "CONDITIONING")],
            [NEGATIVE],
            inputs=[("clip", "CLIP")],
            title="Negative prompt",
        )
    )
    latent = g.add(Node(5, "EmptyLatentImage", None, [("LATENT", "LATENT")], [512, 768, 1]))
    g.link(ckpt, 0, zsnr, "model")
    g.link(ckpt, 1, pos, "clip")
    g.link(ckpt, 1, neg, "clip")
    return ckpt, zsnr, pos, neg, latent


def _decode_and_save(g: Graph, ckpt: Node, samples: Node, prefix: str) -> None:
    decode = g.add(
        Node(
            20,
            "VAEDecode",
            None,
            [("IMAGE", "IMAGE")],
            [],
            inputs=[("samples", "LATENT"), ("vae", "VAE")],
        )
    )
    save = g.add(
        Node(21, "SaveImage", None, [], [prefix], inputs=[("images", "IMAGE")])
    )
    g.link(samples, 0, decode, "samples")
    g.link(ckpt, 2, decode, "vae")
    g.link(decode, 0, save, "images")


def zero_snr_ksampler() -> Graph:
    g = Graph()
    ckpt, zsnr, pos, neg, latent = _common(g)
    ks = g.add(
        Node(
            10,
            "KSampler",
            None,
            [("LATENT", "LATENT")],
            [1234, "fixed", 30, 7.0, "euler", "simple", 1.0],
            inputs=[
                ("model", "MODEL"),
                ("positive", "CONDITIONING"),
                ("negative", "CONDITIONING"),
                ("latent_image", "LATENT"),
            ],
        )
    )
    g.link(zsnr, 0, ks, "model")
    g.link(pos, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(latent, 0, ks, "latent_image")
    _decode_and_save(g, ckpt, ks, "MDIM/zero_snr_ksampler")
    return g


def zero_snr_trailing_sigmas() -> Graph:
    g = Graph()
    ckpt, zsnr, pos, neg, latent = _common(g)
    sigmas = g.add(
        Node(
            6,
            "MDIM_TrailingSigmas",
            None,
            [("SIGMAS", "SIGMAS")],
            [30, 1.0],
            inputs=[("model", "MODEL")],
            title="MDIM Trailing Sigmas",
        )
    )
    sampler = g.add(
        Node(7, "KSamplerSelect", None, [("SAMPLER", "SAMPLER")], ["euler"])
    )
    sc = g.add(
        Node(
            10,
            "SamplerCustom",
            None,
            [("output", "LATENT"), ("denoised_output", "LATENT")],
            [True, 1234, "fixed", 7.0],
            inputs=[
                ("model", "MODEL"),
                ("positive", "CONDITIONING"),
                ("negative", "CONDITIONING"),
                ("sampler", "SAMPLER"),
                ("sigmas", "SIGMAS"),
                ("latent_image", "LATENT"),
            ],
        )
    )
    g.link(zsnr, 0, sigmas, "model")
    g.link(zsnr, 0, sc, "model")
    g.link(pos, 0, sc, "positive")
    g.link(neg, 0, sc, "negative")
    g.link(sampler, 0, sc, "sampler")
    g.link(sigmas, 0, sc, "sigmas")
    g.link(latent, 0, sc, "latent_image")
    _decode_and_save(g, ckpt, sc, "MDIM/zero_snr_trailing_sigmas")
    return g


def main() -> None:
    zero_snr_ksampler().write(WORKFLOWS / "mdim_zero_snr_ksampler.json")
    zero_snr_trailing_sigmas().write(WORKFLOWS / "mdim_zero_snr_trailing_sigmas.json")


if __name__ == "__main__":
    main()
