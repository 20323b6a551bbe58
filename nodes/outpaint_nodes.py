"""MDIM Outpaint Pad: extend a page or panel on any side for outpainting.

The padding plan, the fills and the mask live in ``mdim_core.inpaint.outpaint``; this module only
declares the node. Connect its IMAGE and MASK to MDIM SGIM Inpaint (image, mask) to draw the new area.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..mdim_core.inpaint import outpaint

SIDE_MAX = outpaint.MAX_SIDE


def _side(name: str, where: str) -> io.Int.Input:
    return io.Int.Input(
        name, default=0, min=0, max=SIDE_MAX, step=1, tooltip=f"Pixels to add {where} (0 = none)."
    )


class MDIMOutpaintPad(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_OutpaintPad",
            display_name="MDIM Outpaint Pad",
            category="MDIM/inpaint",
            description=(
                "Extends a page or panel on any side (a page cut by the scan, a panel to widen) and gives the "
                "mask of the new area, for MDIM SGIM Inpaint to draw it. The original pixels are kept bit for "
                "bit. Optionally pads on to an aspect (e.g. a manga page, 1:√2) or an exact size."
            ),
            inputs=[
                io.Image.Input(
                    "image", tooltip="The page or panel to extend (grayscale or RGB; alpha is dropped)."
                ),
                _side("top", "above the image"),
                _side("bottom", "below the image"),
                _side("left", "left of the image"),
                _side("right", "right of the image"),
                io.Combo.Input(
                    "fill",
                    options=list(outpaint.FILL_MODES),
                    default="paper",
                    tooltip=(
                        "What the new area holds before it is drawn. 'paper': the page's own paper colour (best "
                        "for a full-denoise pass such as SGIM: no streaks, the scan's tone); 'white'; 'edge' "
                        "repeats the border pixels (a panel border becomes a black band); 'mirror' reflects the "
                        "page (for low-denoise passes only: it copies content); 'grey' 0.5 as ComfyUI's Pad "
                        "Image for Outpainting."
                    ),
                ),
                io.Int.Input(
                    "feather",
                    default=0,
                    min=0,
                    max=1024,
                    tooltip=(
                        "Soften the mask over this many pixels of the new area next to the original (the "
                        "original stays 0). Leave 0 for MDIM SGIM Inpaint, which treats mask values below 0.5 "
                        "as kept, and use its own 'feather' instead."
                    ),
                ),
                io.Combo.Input(
                    "aspect",
                    options=list(outpaint.ASPECTS),
                    default="off",
                    tooltip=(
                        "After the side padding, pad on until width:height is this (only the shorter side "
                        "grows). 'off' keeps the size. Not together with target_width/target_height."
                    ),
                ),
                io.Int.Input(
                    "target_width",
                    default=0,
                    min=0,
                    max=SIDE_MAX,
                    tooltip="After the side padding, pad on to exactly this width (0 = no target). Never crops.",
                ),
                io.Int.Input(
                    "target_height",
                    default=0,
                    min=0,
                    max=SIDE_MAX,
                    tooltip="After the side padding, pad on to exactly this height (0 = no target). Never crops.",
                ),
                io.Combo.Input(
                    "anchor",
                    options=list(outpaint.ANCHORS),
                    default="center",
                    tooltip=(
                        "Where the image sits when aspect or a target size adds space: 'center' splits it, "
                        "'top' puts it all below, 'bottom-left' above and to the right, and so on."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The extended image; the original pixels are unchanged."),
                io.Mask.Output(
                    "mask", tooltip="1 on the new area, 0 on the original: connect to SGIM's mask."
                ),
            ],
        )

    @classmethod
    def execute(
        cls, image, top, bottom, left, right, fill, feather, aspect, target_width, target_height, anchor
    ) -> io.NodeOutput:
        image = outpaint.check_image(image)
        padding = outpaint.plan_padding(
            tuple(image.shape[1:3]),
            top=top,
            bottom=bottom,
            left=left,
            right=right,
            aspect=aspect,
            target_height=target_height,
            target_width=target_width,
            anchor=anchor,
        )
        padded, mask = outpaint.outpaint_pad(image, padding, fill, feather)
        return io.NodeOutput(padded, mask)


NODES = [MDIMOutpaintPad]
