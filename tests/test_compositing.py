import pytest
import torch

from mdim_core.imaging.compositing import composite, paste_into


def _pair(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 9, 11, 3, generator=g).to(dtype), torch.rand(2, 9, 11, 3, generator=g).to(dtype)


def test_binary_composite_is_exact():
    orig, new = _pair()
    mask = torch.zeros(2, 9, 11)
    mask[:, 2:5, 3:8] = 1
    out = composite(orig, new, mask)
    inside = mask.bool()
    assert torch.equal(out[~inside], orig[~inside]) and torch.equal(out[inside], new[inside])


def test_feather_blends_inside_only_and_keeps_dtype():
    orig, new = _pair(torch.float16)
    mask = torch.zeros(2, 9, 11)
    mask[:, 2:7, 2:9] = 1
    weight = torch.full_like(mask, 0.25)  # nonzero outside too: must be ignored there
    weight[:, 4, 5] = 1.0
    out = composite(orig, new, mask, weight)
    assert out.dtype == torch.float16
    outside = ~mask.bool()
    assert torch.equal(out[outside], orig[outside])
    assert torch.equal(out[:, 4, 5], new[:, 4, 5])
    expected = (orig.float() + 0.25 * (new.float() - orig.float())).half()
    assert torch.equal(out[:, 2, 2], expected[:, 2, 2])


def test_shape_errors_name_the_input():
    orig, new = _pair()
    with pytest.raises(ValueError, match="new: expected shape"):
        composite(orig, new[:, :5], torch.zeros(2, 9, 11))
    with pytest.raises(ValueError, match="mask: expected shape"):
        composite(orig, new, torch.zeros(1, 9, 11))


def test_paste_into_writes_only_the_box_and_rows():
    page = torch.zeros(3, 6, 6, 1)
    paste_into(page, torch.ones(2, 2, 3, 1), (1, 2, 3, 5), [0, 2])
    assert int(page.sum()) == 12 and page[1].sum() == 0 and page[0, 1:3, 2:5].min() == 1


def test_bool_and_float_masks_agree():
    orig, new = _pair()
    mask = torch.rand(2, 9, 11) > 0.5
    assert torch.equal(composite(orig, new, mask), composite(orig, new, mask.float()))
