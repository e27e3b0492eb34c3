"""GeneCIS's exact Visual Genome crop (dilation 0.7 from the clamped left/top, black square padding)."""

from __future__ import annotations

import pytest
from PIL import Image

from cirbench.benchmarks.base import ImageRef
from cirbench.benchmarks.genecis import crop_box as genecis_crop_box
from cirbench.benchmarks.genecis import expand_to_square
from cirbench.benchmarks.genecis import open_genecis_image as open_image


def test_crop_box_near_the_border_shifts_instead_of_shrinking():
    # x=90, y=10, w=h=20 on a 100x50 image: left = 90 - 14 = 76, top clamps to 0, and right/bottom are
    # computed from the clamped values: right = min(100, 76 + 34) = 100, bottom = min(50, 0 + 34) = 34.
    assert genecis_crop_box((90, 10, 20, 20), 100, 50) == pytest.approx((76.0, 0.0, 100.0, 34.0))
    # Well inside the image: a 1.7x box starting 0.7 w/h before the instance.
    assert genecis_crop_box((40, 20, 10, 10), 200, 200) == pytest.approx((33.0, 13.0, 50.0, 30.0))


def test_expand_to_square_centres_on_black():
    wide = Image.new("RGB", (30, 10), (255, 0, 0))
    square = expand_to_square(wide)
    assert square.size == (30, 30)
    assert square.getpixel((0, 0)) == (0, 0, 0) and square.getpixel((15, 15)) == (255, 0, 0)
    assert square.getpixel((15, 9)) == (0, 0, 0) and square.getpixel((15, 10)) == (255, 0, 0)
    tall = expand_to_square(Image.new("L", (4, 10), 200))
    assert tall.size == (10, 10) and tall.getpixel((0, 5)) == 0 and tall.getpixel((3, 5)) == 200


def test_open_image_applies_crop_then_padding(tmp_path):
    image = Image.new("RGB", (100, 50), (0, 255, 0))
    path = tmp_path / "1.jpg"
    image.save(path, quality=100)
    out = open_image(ImageRef("vg:1:90,10,20,20", path, crop=(90, 10, 20, 20)))
    assert out.size == (34, 34)  # the 24 x 34 crop padded to a square
    assert out.getpixel((0, 17)) == (0, 0, 0) and out.getpixel((17, 17))[1] > 200
