#!/usr/bin/python3
"""Writes tests/fixtures/images/: a 37x23 RGB source (smooth gradients plus noise, with hard
edges) and Pillow's Image.resize(BICUBIC) of it at several sizes, shrinking and growing in either
direction, all PNG (lossless). The engine's resize must equal them bit for bit
(tests/engine/image_test.cc). Needs Pillow (Debian: python3-pil); output committed.

  make_image_fixtures.py [OUT_DIR]
"""
import os
import random
import sys

from PIL import Image

SIZES = [(16, 16), (80, 50), (37, 11), (20, 23), (112, 90), (5, 3), (1, 1)]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "images")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(7)
    w, h = 37, 23
    src = Image.new("RGB", (w, h))
    px = []
    for y in range(h):
        for x in range(w):
            edge = 255 if (x // 6 + y // 5) % 2 else 0
            px.append(((x * 7 + rng.randrange(40)) % 256, (y * 11 + rng.randrange(40)) % 256,
                       edge if rng.random() < 0.8 else rng.randrange(256)))
    src.putdata(px)
    src.save(os.path.join(out, "source-37x23.png"))
    for sw, sh in SIZES:
        src.resize((sw, sh), Image.BICUBIC).save(os.path.join(out, f"bicubic-{sw}x{sh}.png"))
    print(f"wrote {len(SIZES) + 1} images to {out} (Pillow {Image.__version__})")


if __name__ == "__main__":
    main()
