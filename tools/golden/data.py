#!/usr/bin/env python3
"""Writes the data layer's fixture: what diffusers' train_dreambooth_lora.py feeds the
VAE for the shared DreamBooth photos, as checksums.

usage: data.py SHARED_DATA OUT_DIR   (make golden: ../shared/data tests/fixtures/data)

The script's DreamBoothDataset does, per instance image:
    image = exif_transpose(Image.open(path))
    if not image.mode == "RGB": image = image.convert("RGB")
    transforms.Compose([Resize(size, BILINEAR), CenterCrop(size), ToTensor(),
                        Normalize([0.5], [0.5])])(image)
torchvision is not in the golden venv (a pip torchvision needs pip's torch, not
Debian's), so Resize and CenterCrop are torchvision 0.14's computations as written
in tests/data_check.py (Resize on a PIL image is PIL's own resize), and ToTensor and
Normalize are its tensor operations on real torch tensors: from_numpy, permute to
CHW, .to(float32).div(255), then .sub_(mean).div_(std) with float32 mean and std.

OUT_DIR/reference.json:
  format          1
  versions        Pillow, its libjpeg-turbo, torch, numpy that wrote it
  normalize_bits  ToTensor + Normalize of the byte values 0..255: float32 bit patterns
  photos          [{"file": "dreambooth/<set>/<name>.jpg" (under SHARED_DATA),
                    "sha256": the file's, "width", "height": upright,
                    "tensors": [{"size": 512 | 64, "sha256": the float32 tensor's,
                                 permuted to our HWC layout, little-endian}]}]
The photos are CC BY 4.0 and are not committed, nor anything that could restore
them: only checksums. The output is the same bytes on every run.
"""
import hashlib
import json
import pathlib
import sys

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps, features

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests"))
from data_check import torchvision_center_crop, torchvision_resize  # noqa: E402

SIZES = (512, 64)


def to_tensor(image):
    """torchvision 0.14 F.to_tensor on an 8-bit RGB PIL image."""
    t = torch.from_numpy(np.array(image, np.uint8, copy=True))
    t = t.view(image.size[1], image.size[0], 3).permute((2, 0, 1)).contiguous()
    return t.to(dtype=torch.float32).div(255)


def normalize(t):
    """torchvision 0.14 F.normalize(tensor, [0.5], [0.5]) (not in place on the input)."""
    mean = torch.as_tensor([0.5], dtype=t.dtype)
    std = torch.as_tensor([0.5], dtype=t.dtype)
    return t.clone().sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


def hwc_sha256(t):
    """The SHA-256 of a CHW float32 tensor's values in HWC order, little-endian."""
    hwc = t.permute(1, 2, 0).contiguous().numpy().astype("<f4")
    return hashlib.sha256(hwc.tobytes()).hexdigest()


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 1
    shared, out_dir = pathlib.Path(argv[1]), pathlib.Path(argv[2])
    levels = Image.frombytes("RGB", (256, 1), bytes(v for v in range(256) for _ in range(3)))
    bits = normalize(to_tensor(levels))[0, 0].numpy().view(np.uint32)
    photos = []
    for path in sorted((shared / "dreambooth").glob("*/*.jpg")):
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
        if image.mode != "RGB":
            image = image.convert("RGB")
        tensors = []
        for size in SIZES:
            crop = torchvision_center_crop(torchvision_resize(image, size), size)
            tensors.append({"size": size, "sha256": hwc_sha256(normalize(to_tensor(crop)))})
        photos.append({"file": path.relative_to(shared).as_posix(),
                       "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                       "width": image.size[0], "height": image.size[1], "tensors": tensors})
    if not photos:
        print(f"data.py: no photos under {shared / 'dreambooth'}")
        return 1
    out = {"format": 1,
           "versions": {"Pillow": PIL.__version__,
                        "libjpeg_turbo": features.version("libjpeg_turbo"),
                        "torch": torch.__version__, "numpy": np.__version__},
           "normalize_bits": [int(b) for b in bits],
           "photos": photos}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "reference.json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"data.py: {len(photos)} photos into {out_dir / 'reference.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
