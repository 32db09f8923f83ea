#!/usr/bin/python3
"""Writes the vision-tower fixtures (tests/fixtures/vision/): tiny random towers with the structure
of VisualRWKV-7's DINOv2 (class + 4 register tokens, position embeddings on the patches only,
layer scale, exact GELU) and SigLIP (no prefix tokens, no layer scale) towers, built with timm
(`pretrained=False`), their weights rounded to float32 and stored as safetensors under timm's
names, the input pixels (float32), and the float64 output of
`get_intermediate_layers(pixels, n={depth - 2})` (the second-to-last block, prefix tokens removed,
no final norm: what VisualRWKV takes) as raw little-endian float64.

The SAM tower is the official one: `--sam PATH` names VisualRWKV's `v7.00/src/sam.py` (from a
checkout of howard-hou/VisualRWKV; imported, not copied), built tiny (64x64 input, patch 8, window
3 so that windows are padded, block 1 global), every parameter random; its LosslessDownSampler
hard-codes a 32x32 output grid, so for the 8x8 grid here its forward is replaced by the same view /
permute with the grid's own size.

Needs PyTorch and timm (Debian python3-torch 1.13 + pip `timm==1.0.9 --no-deps`); output committed.

  make_vision_fixtures.py [OUT_DIR] [--sam PATH/sam.py]
"""
import importlib.util
from functools import partial
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


def make_encoder(out, models, sam_enc):
    """The three tiny towers and a gated projector as one VisualRWKV checkpoint (vit.*, proj.*), and
    the rows VisualRWKV's encode_images gives for tests/fixtures/images/source-37x23.png: PIL
    bicubic resize per tower, ToTensor/Normalize (SAM with DINO's), towers, concatenation, 2x2
    adaptive pooling, projector."""
    from PIL import Image
    import torchvision.transforms as T
    img = Image.open(os.path.join(os.path.dirname(out), "images", "source-37x23.png")).convert("RGB")
    imagenet = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def prep(size, norm):
        return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(), norm])(
            img)[None].double()

    torch.manual_seed(15)
    width = 64  # tests/fixtures/tiny-rwkv7's n_embd: the encoder completes that model into a VisualRWKV.
    channels = models["dino"].embed_dim + models["siglip"].embed_dim + 4 * 8
    proj = {"gate.weight": 0.2 * torch.randn(channels, channels), "o_proj.weight": 0.2 * torch.randn(width, channels),
            "ln_v.weight": 1 + 0.2 * torch.randn(width), "ln_v.bias": 0.2 * torch.randn(width)}
    proj = {k: v.float().double() for k, v in proj.items()}
    with torch.no_grad():
        d = models["dino"].get_intermediate_layers(prep(28, imagenet), n={1})[0]
        s = models["siglip"].get_intermediate_layers(prep(28, half), n={1})[0]
        m = sam_enc(prep(64, imagenet))
        m = m.reshape(1, m.shape[1], -1).permute(0, 2, 1)
        feats = torch.cat([d, s, m], dim=2)  # [1, 16, channels]
        grid = feats.view(1, 4, 4, channels).permute(0, 3, 1, 2)
        pooled = torch.nn.AdaptiveAvgPool2d(2)(grid).view(1, channels, -1).permute(0, 2, 1)[0]
        rows = torch.nn.functional.layer_norm(
            (pooled * torch.sigmoid(pooled @ proj["gate.weight"].T)) @ proj["o_proj.weight"].T, (width,),
            proj["ln_v.weight"], proj["ln_v.bias"], 1e-5)
    tensors = {}
    for tower, module in (("dino", models["dino"]), ("siglip", models["siglip"]), ("sam", sam_enc)):
        for k, v in module.state_dict().items():
            if not k.startswith(("head", "fc_norm")):
                tensors[f"vit.{tower}_featurizer.{k}"] = v.float().numpy()
    for k, v in proj.items():
        tensors[f"proj.{k}"] = v.float().numpy()
    write_safetensors(os.path.join(out, "tiny-visualrwkv-encoder.safetensors"), tensors, {k: "f32" for k in tensors})
    np.asarray(rows.numpy(), "<f8").tofile(os.path.join(out, "tiny-visualrwkv-encoder.rows.f64"))

    # The whole VisualRWKV-7: tests/fixtures/tiny-rwkv7-f32 as `rwkv.*` beside the encoder, and the
    # float64 logits of every position of [4 image rows] + the manifest's first 6 tokens (the rows
    # through blocks.0.ln0 like embeddings: tests/reference/rwkv7_ref.py).
    from rwkv7_ref import Rwkv7
    from tensorio import read_safetensors
    fix = os.path.join(os.path.dirname(out))
    lm = read_safetensors(os.path.join(fix, "tiny-rwkv7-f32.safetensors"))
    model = Rwkv7(lm)
    tokens = json.load(open(os.path.join(fix, "tiny-rwkv7.json")))["tokens"][:6]
    state = model.init_state()
    logits = [model.forward_row(r, state) for r in rows.numpy()] + [model.forward(t, state) for t in tokens]
    full = {f"rwkv.{k}": v for k, v in lm.items()}
    full.update(tensors)
    write_safetensors(os.path.join(out, "tiny-visualrwkv7.safetensors"), full, {k: "f32" for k in full},
                      metadata={"tokens_per_image": "4", "tokens": json.dumps(tokens)})
    np.asarray(np.stack(logits), "<f8").tofile(os.path.join(out, "tiny-visualrwkv7.logits.f64"))


def make_sam(out, sam_py, manifest):
    spec = importlib.util.spec_from_file_location("official_sam", sam_py)
    sam = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sam)
    torch.manual_seed(14)
    enc = sam.ImageEncoderViT(img_size=64, patch_size=8, embed_dim=32, depth=3, num_heads=4, mlp_ratio=4.0, out_chans=8,
                              qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                              window_size=3, global_attn_indexes=(1,)).eval()

    def down(x):  # LosslessDownSampler's view / permute, with this grid's size instead of 32.
        b, c, h, w = x.shape
        y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
        return y.contiguous().view(b, h // 2, w // 2, 4 * c).permute(0, 3, 1, 2)

    enc.down_sampler.forward = down
    with torch.no_grad():
        for name, p in enc.named_parameters():
            norm_weight = name.endswith("weight") and ("norm" in name or name in ("neck.1.weight", "neck.3.weight"))
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if norm_weight else 0.2 * torch.randn_like(p))
        enc = enc.double()
        for p in enc.parameters():
            p.copy_(p.float().double())
        pixels = torch.randn(1, 3, 64, 64, dtype=torch.float32).double()
        feats = enc(pixels)[0]  # [4c, 4, 4]
        feats = feats.reshape(feats.shape[0], -1).permute(1, 0)  # [16 tokens, 32], as the backbone flattens.
    tensors = {k: v.float().numpy() for k, v in enc.state_dict().items()}
    tensors["pixels"] = pixels[0].float().numpy()
    write_safetensors(os.path.join(out, "tiny-sam.safetensors"), tensors, {k: "f32" for k in tensors})
    np.asarray(feats.numpy(), "<f8").tofile(os.path.join(out, "tiny-sam.features.f64"))
    manifest["sam"] = {"img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 3, "num_heads": 4, "window": 3,
                       "global_blocks": [1], "out_chans": 8, "features": list(feats.shape)}
    return enc


def main():
    args = [a for a in sys.argv[1:]]
    sam_py = None
    if "--sam" in args:
        i = args.index("--sam")
        sam_py = args[i + 1]
        del args[i:i + 2]
    out = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "fixtures", "vision")
    os.makedirs(out, exist_ok=True)
    manifest = {}
    models = {}
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
        models[name] = m
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

    if sam_py:
        make_encoder(out, models, make_sam(out, sam_py, manifest))
    else:
        print("no --sam: the SAM fixture is left as it is")
        old = os.path.join(out, "towers.json")
        if os.path.exists(old) and "sam" in json.load(open(old)):
            manifest["sam"] = json.load(open(old))["sam"]

    with open(os.path.join(out, "towers.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(TOWERS)} towers to {out}")


if __name__ == "__main__":
    main()
