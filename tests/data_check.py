#!/usr/bin/env python3
"""The Python side of suite data (tests/test_data.c): Pillow as diffusers' DreamBooth
script uses it, the reference for our image loading and transform.

usage:
  data_check.py reference LIST_JSON RESULT_JSON
      LIST_JSON is [{"path": IMAGE, "size": S, "out": RAW}, ...]. For each image,
      what train_dreambooth_lora.py makes of it before ToTensor:
          image = exif_transpose(Image.open(path)); image = image.convert("RGB")
      then, when S > 0, transforms.Resize(S, BILINEAR) and transforms.CenterCrop(S)
      as torchvision 0.14 computes them on a PIL image (written out below, since
      the test venv has no torchvision). RAW receives the RGB bytes (row-major,
      interleaved); RESULT_JSON a list, in order, of {"width": W, "height": H} or
      {"error": MESSAGE} when Pillow cannot read the file.
  data_check.py normalize OUT_F32
      ToTensor and Normalize([0.5], [0.5]) of the 256 byte values in float32, the
      operations torch does (div(255), sub(0.5), div(0.5)), into OUT_F32.
  data_check.py variants DIR
      Writes images that Pillow can write for the loader tests into DIR (gray, CMYK
      and progressive JPEGs; gray, gray+alpha, palette, palette with transparency
      and RGBA PNGs; orientations in a JPEG's Exif and XMP, a PNG's eXIf chunk, its
      raw EXIF profile text and its XMP text) and their names to DIR/variants.json.

Exit status: 0 when done, 1 on a problem, 77 when numpy or Pillow is not installed.
"""
import json
import struct
import sys

try:
    import numpy as np
    from PIL import Image, ImageOps, PngImagePlugin
except ImportError as e:
    print(f"data_check.py: {e}")
    sys.exit(77)


def torchvision_resize(image, size):
    """transforms.Resize(size) with an int size on a PIL image, torchvision 0.14:
    _compute_resized_output_size makes the shorter side `size` and the longer
    int(size * long / short); F_pil.resize then calls image.resize((w, h), BILINEAR)
    (the antialias argument is for tensors only: PIL always filters)."""
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return image
    return image.resize((new_w, new_h), Image.BILINEAR)


def torchvision_center_crop(image, size):
    """transforms.CenterCrop(size), torchvision 0.14 F.center_crop, for an image at
    least `size` on each side (always so after Resize(size)):
    crop_top = int(round((image_height - crop_height) / 2.0)), likewise left."""
    w, h = image.size
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def reference(list_path, result_path):
    with open(list_path, encoding="utf-8") as f:
        entries = json.load(f)
    results = []
    for e in entries:
        try:
            with Image.open(e["path"]) as opened:
                image = ImageOps.exif_transpose(opened)
            if image.mode != "RGB":
                image = image.convert("RGB")
        except Exception as error:  # Pillow raises many kinds for broken files
            results.append({"error": f"{type(error).__name__}: {error}"})
            continue
        if e["size"] > 0:
            image = torchvision_center_crop(torchvision_resize(image, e["size"]), e["size"])
        with open(e["out"], "wb") as f:
            f.write(image.tobytes())
        results.append({"width": image.size[0], "height": image.size[1]})
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(results, f)
    return 0


def normalize(out_path):
    v = np.arange(256, dtype=np.uint8).astype(np.float32)
    v = (v / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    v.astype("<f4").tofile(out_path)
    return 0


def tiff_ifd0(entries, little=True):
    """A TIFF structure with one IFD of (tag, type, count, 4 value bytes) entries."""
    e = "<" if little else ">"
    out = (b"II" if little else b"MM") + struct.pack(e + "HIH", 42, 8, len(entries))
    for tag, kind, count, value in entries:
        out += struct.pack(e + "HHI", tag, kind, count) + value
    return out + struct.pack(e + "I", 0)


def orientation_exif(value, little=True):
    e = "<" if little else ">"
    return tiff_ifd0([(0x0112, 3, 1, struct.pack(e + "HH", value, 0))], little)


def xmp_packet(value, element=False):
    """An XMP packet with the orientation as an attribute or as an element."""
    attrs, inner = ("", f"<tiff:Orientation>{value}</tiff:Orientation>") if element else \
        (f' tiff:Orientation="{value}"', "")
    return ('<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{attrs}>{inner}'
            "</rdf:Description></rdf:RDF></x:xmpmeta>")


def variants(out_dir):
    # 37 x 23: odd and not square, so every flip and turn shows, and chroma
    # subsampling has a ragged edge. A smooth ramp plus noise.
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:23, 0:37]
    base = np.stack([x * 6, y * 10, (x + y) * 4], axis=-1) + rng.integers(0, 40, (23, 37, 3))
    rgb = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (23, 37), dtype=np.uint8)))
    names = []

    def save(name, image, **options):
        image.save(f"{out_dir}/{name}", **options)
        names.append(name)

    save("gray.jpg", rgb.convert("L"), quality=90)
    save("cmyk.jpg", rgb.convert("CMYK"), quality=90)
    save("progressive.jpg", rgb, quality=85, progressive=True)
    save("subsampling_444.jpg", rgb, quality=95, subsampling=0)
    # Pillow writes a JPEG's exif bytes as the APP1 payload, prefix included.
    app1 = b"Exif\0\0"
    save("exif_pillow_o6.jpg", rgb, exif=app1 + orientation_exif(6))
    save("exif_o3_xmp_o6.jpg", rgb, exif=app1 + orientation_exif(3), xmp=xmp_packet(6).encode())
    # An EXIF block without an orientation tag (a resolution only): XMP decides.
    no_orientation = tiff_ifd0([(0x0128, 3, 1, struct.pack("<HH", 2, 0))])
    save("exif_none_xmp_o5.jpg", rgb, exif=app1 + no_orientation,
         xmp=xmp_packet(5, element=True).encode())
    save("xmp_o8.jpg", rgb, xmp=xmp_packet(8).encode())
    save("exif_o9_xmp_o6.jpg", rgb, exif=app1 + orientation_exif(9), xmp=xmp_packet(6).encode())

    save("gray.png", rgb.convert("L"))
    save("gray_alpha.png", rgba.convert("LA"))
    save("palette.png", rgb.quantize(colors=13))
    paletted = rgb.quantize(colors=13)
    save("palette_transparency.png", paletted, transparency=3)
    save("rgba.png", rgba)
    save("exif_chunk_o6.png", rgb, exif=orientation_exif(6, little=False))
    raw = orientation_exif(7)
    info = PngImagePlugin.PngInfo()
    hex_lines = "\n".join(raw.hex()[i:i + 72] for i in range(0, len(raw.hex()), 72))
    info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{hex_lines}\n")
    save("raw_profile_o7.png", rgb, pnginfo=info)
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp_packet(2))
    save("xmp_o2.png", rgb, pnginfo=info)

    with open(f"{out_dir}/variants.json", "w", encoding="utf-8") as f:
        json.dump(names, f)
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "reference":
        return reference(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "normalize":
        return normalize(argv[2])
    if len(argv) == 3 and argv[1] == "variants":
        return variants(argv[2])
    print(__doc__)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
