"""Fine-tune a Stable Diffusion 1.x (inpainting) model into an MDIM model: ``python -m mdim_core train``.

The MDIM thesis' recipe: a zero-terminal-SNR noise schedule with v-prediction and an MSE loss on v;
the inpainting mask is the whole image with probability 0.75, otherwise shapes like what users
remove (bubbles, text lines, SFX, LaMa-style strokes and boxes); pages with their text already
removed; prompts ``"manga, manga style, comic, monochrome, " + tags`` in random order; crops at the
scale the SGIM structure pass sees (the page halved until its longest side is at most 1024); lr 1e-6,
batch 4, a constant learning rate. A 4-channel base becomes a 9-channel inpainting UNet whose extra
input channels start at zero.

Modules (imported on demand; nothing here imports ComfyUI):

- :mod:`.objective`  the noise schedule, the training target (v or epsilon) and the loss;
- :mod:`.data`       page folders with tags, prompts, structure-scale pages and training crops;
- :mod:`.masks`      training masks from the pack's own mask generators;
- :mod:`.ldm_layout` the single-file (original LDM) key layout of SD1.x checkpoints, both ways;
- :mod:`.models`     loading a base (diffusers folder or single file), the SD1.x check, 4 -> 9 channels,
                     writing the result (diffusers folder and single file);
- :mod:`.state`      atomic, resumable training checkpoints (safetensors only) and their rotation;
- :mod:`.validation` the validation pass through the SGIM engine and its metrics;
- :mod:`.trainer`    the training loop (accelerate: mixed precision, several GPUs).
"""
