#!/usr/bin/python3
"""Writes the vision-tower fixtures (tests/fixtures/vision/): tiny random towers with the structure
of VisualRWKV-7's DINOv2 (class + 4 register tokens, position embeddings on the patches only,
layer scale, exact GELU) and SigLIP (no prefix tokens, no layer scale) towers, built with timm
(`pretrained=False`), their weights rounded to float32 and stored as safetensors under timm's
names, the input pixels (float32), and the float64 output of
`get_intermediate_layers(pixels, n={depth - 2})` (the second-to-last block, prefix tokens removed,
no final norm: what VisualRWKV takes) as raw little-endian float64.

Needs PyTorch and timm (Debian python3-torch 1.13 + pip `timm==1.0.9 --no-deps`); output committed.

  make_vision_fixtures.py [OUT_DIR]
"""
import json
import os
import sys

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tensorio import write_safetensors  # noqa: E402

TOWERS = {
    "dino": dict(img_size=28, patch_size=7, embed_dim=48, depth=3, num_heads=4, mlp_ratio=4.0, class_token=True,
                 reg_tokens=4, no_embed_class=True, init_values=1.0, global_pool="token"),
    "siglip": dict(img_size=28, patch_size=7, embed_dim=40, depth=3, num_heads=5, mlp_ratio=3.0, class_token=False,
                   reg_tokens=0, no_embed_class=False, init_values=None, global_pool="avg"),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "vision")
    os.makedirs(out, exist_ok=True)
    manifest = {}
    for name, cfg in TOWERS.items():
        torch.manual_seed(11 if name == "dino" else 12)
        m = VisionTransformer(num_classes=0, **cfg).eval()
        with torch.no_grad():
            for pname, p in m.named_parameters():  # Weights that matter in every term.
                scale = 1.0 if ("norm" in pname and pname.endswith("weight")) else 0.0
                p.copy_(scale + 0.2 * torch.randn_like(p) if scale else 0.2 * torch.randn_like(p))
            m = m.double()
            for p in m.parameters():
                p.copy_(p.float().double())  # The values the float32 file holds.
            pixels = torch.randn(1, 3, cfg["img_size"], cfg["img_size"], dtype=torch.float32).double()
            feats = m.get_intermediate_layers(pixels, n={cfg["depth"] - 2})[0][0]  # [patches, dim]
        tensors = {k: v.float().numpy() for k, v in m.state_dict().items() if not k.startswith(("head", "fc_norm"))}
        tensors["pixels"] = pixels[0].float().numpy()
        write_safetensors(os.path.join(out, f"tiny-{name}.safetensors"), tensors, {k: "f32" for k in tensors})
        np.asarray(feats.numpy(), "<f8").tofile(os.path.join(out, f"tiny-{name}.features.f64"))
        manifest[name] = {**{k: v for k, v in cfg.items() if k != "global_pool"}, "features": list(feats.shape),
                          "output_block": cfg["depth"] - 2}
    # The head: features on a 6x6 grid of 24 channels pooled to 2x2 (windows of 3) and to 4x4
    # (overlapping windows of 2), then both projector kinds to a width of 16, in float64 on the
    # float32 values (torch's AdaptiveAvgPool2d, the official MLPWithContextGating's formula).
    torch.manual_seed(13)
    grid, ch, width = 6, 24, 16
    feats = torch.randn(grid * grid, ch).float().double()
    gate = (0.3 * torch.randn(ch, ch)).float().double()
    o_proj = (0.3 * torch.randn(width, ch)).float().double()
    ln_w = (1 + 0.2 * torch.randn(width)).float().double()
    ln_b = (0.2 * torch.randn(width)).float().double()
    linear = (0.3 * torch.randn(width, ch)).float().double()
    head = {"features": feats, "gated.gate.weight": gate, "gated.o_proj.weight": o_proj, "gated.ln_v.weight": ln_w,
            "gated.ln_v.bias": ln_b, "linear.weight": linear}
    write_safetensors(os.path.join(out, "tiny-head.safetensors"), {k: v.numpy() for k, v in head.items()},
                      {k: "f32" for k in head})
    results = []
    for s in (2, 4):
        pooled = torch.nn.AdaptiveAvgPool2d(s)(feats.view(grid, grid, ch).permute(2, 0, 1)[None])[0]
        pooled = pooled.view(ch, s * s).permute(1, 0)
        gated = torch.nn.functional.layer_norm((pooled * torch.sigmoid(pooled @ gate.T)) @ o_proj.T, (width,), ln_w, ln_b,
                                               1e-5)
        results += [pooled.reshape(-1), gated.reshape(-1), (pooled @ linear.T).reshape(-1)]
    np.asarray(torch.cat(results).numpy(), "<f8").tofile(os.path.join(out, "tiny-head.expected.f64"))

    with open(os.path.join(out, "towers.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(TOWERS)} towers to {out}")


if __name__ == "__main__":
    main()
