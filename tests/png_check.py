#!/usr/bin/env python3
"""The Python side of suite png (tests/test_png.c).

usage:
  png_check.py verify PNG EXPECTATIONS_JSON
      Opens PNG, written by our png_write, with Pillow and checks it against
      {"width": W, "height": H, "mode": "RGB" | "RGBA", "pixels": RAW_FILE,
       "text": {key: value}, "chunks": {key: "tEXt" | "iTXt"}}:
      size, mode, every pixel (RAW_FILE holds them row-major, interleaved),
      img.info[key] == value for each text, the chunk type that carries each key,
      and that every text chunk comes before the first IDAT.
  png_check.py variants DIR
      Writes PNGs of every color type, bit depth and text chunk kind for png_read
      into DIR, with a byte-level writer of our own (Pillow cannot write 16-bit
      RGB, low bit depths or interlaced files): NAME.png, NAME.rgb (the RGB8 bytes
      png_read must give) and DIR/variants.json listing
      {"name", "width", "height", "text": {...}} for good files and
      {"name", "error": SUBSTRING} for broken ones. Where Pillow reads a file the
      same way, it checks that Pillow's convert("RGB") gives NAME.rgb too.
  png_check.py postprocess IN_F32 OUT_U8
      diffusers' VaeImageProcessor.postprocess on the raw float32 values in IN_F32:
      ((x / 2 + 0.5).clamp(0, 1) * 255).round().astype(uint8) in float32 (torch's
      f32 arithmetic and numpy's are both IEEE single precision), into OUT_U8.
  png_check.py sha256 FILE
      Prints hashlib's SHA-256 of FILE in hex.

Exit status: 0 when everything matches, 1 with one line per problem when not,
77 when numpy or Pillow is not installed.
"""
import hashlib
import json
import os
import struct
import sys
import warnings
import zlib

try:
    import numpy as np
    from PIL import Image
except ImportError as e:
    print(f"png_check.py: {e}")
    sys.exit(77)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunks_of(data):
    """(type, payload) for each chunk of a PNG's bytes."""
    out, pos = [], len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8].decode("latin-1")
        out.append((kind, data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def verify(png_path, expect_path):
    with open(expect_path, encoding="utf-8") as f:
        want = json.load(f)
    problems = []
    with Image.open(png_path) as img:
        img.load()
        if img.format != "PNG":
            problems.append(f"format {img.format}")
        if img.size != (want["width"], want["height"]):
            problems.append(f"size {img.size}, want {(want['width'], want['height'])}")
        if img.mode != want["mode"]:
            problems.append(f"mode {img.mode}, want {want['mode']}")
        with open(want["pixels"], "rb") as f:
            pixels = f.read()
        got = img.tobytes()
        if got != pixels:
            diff = next((i for i in range(min(len(got), len(pixels))) if got[i] != pixels[i]),
                        min(len(got), len(pixels)))
            problems.append(f"pixels differ first at byte {diff} ({len(got)} vs {len(pixels)} bytes)")
        for key, value in want["text"].items():
            if img.info.get(key) != value:
                problems.append(f"info[{key!r}] is {img.info.get(key)!r}, want {value!r}")
            if img.text.get(key) != value:
                problems.append(f"text[{key!r}] is {img.text.get(key)!r}")
    with open(png_path, "rb") as f:
        chunks = chunks_of(f.read())
    kinds = [k for k, _ in chunks]
    first_idat = kinds.index("IDAT") if "IDAT" in kinds else len(kinds)
    for i, (kind, payload) in enumerate(chunks):
        if kind not in ("tEXt", "zTXt", "iTXt"):
            continue
        key = payload.split(b"\0", 1)[0].decode("latin-1")
        if i > first_idat:
            problems.append(f"text chunk {key!r} after the image data")
        if want["chunks"].get(key, kind) != kind:
            problems.append(f"{key!r} is in a {kind} chunk, want {want['chunks'][key]}")
    for p in problems:
        print(f"png_check.py: {png_path}: {p}")
    return 1 if problems else 0


# --- a byte-level PNG writer for the variants -----------------------------------------

def chunk(kind, payload):
    body = kind.encode("latin-1") + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def scanlines(samples, depth):
    """The filter-0 scanlines of a [rows, samples per row] array of sample values."""
    out = bytearray()
    for row in samples:
        out.append(0)
        if depth == 16:
            out += row.astype(">u2").tobytes()
        elif depth == 8:
            out += row.astype(np.uint8).tobytes()
        else:
            per_byte = 8 // depth
            padded = np.zeros(-(-len(row) // per_byte) * per_byte, np.uint32)
            padded[:len(row)] = row
            for i in range(0, len(padded), per_byte):
                byte = 0
                for v in padded[i:i + per_byte]:
                    byte = byte << depth | int(v)
                out.append(byte)
    return bytes(out)


# Adam7: (first column, first row, column step, row step) of each pass.
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]


def image_data(samples, depth, interlace):
    """The uncompressed image data of samples [H, W, C]."""
    h, w, c = samples.shape
    if not interlace:
        return scanlines(samples.reshape(h, w * c), depth)
    raw = b""
    for x0, y0, dx, dy in ADAM7:
        sub = samples[y0::dy, x0::dx]
        if sub.size:
            raw += scanlines(sub.reshape(sub.shape[0], -1), depth)
    return raw


def text_chunk(kind, key, value, valid_utf8=True):
    k = key.encode("latin-1") + b"\0"
    if kind == "tEXt":
        return chunk("tEXt", k + value.encode("latin-1"))
    if kind == "zTXt":
        return chunk("zTXt", k + b"\0" + zlib.compress(value.encode("latin-1")))
    text = value.encode("utf-8") if valid_utf8 else b"bad \xff\xfe utf-8"
    return chunk("iTXt", k + b"\0\0" + b"\0" + b"\0" + text)


def png_file(samples, color_type, depth, interlace=False, palette=None, trns=None,
             before=(), after=(), idat=None, ihdr_size=None):
    h, w, _ = samples.shape
    width, height = ihdr_size or (w, h)
    out = PNG_SIGNATURE + chunk("IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                    color_type, 0, 0, int(interlace)))
    if palette is not None:
        out += chunk("PLTE", palette.astype(np.uint8).tobytes())
    if trns is not None:
        out += chunk("tRNS", trns)
    out += b"".join(before)
    data = zlib.compress(image_data(samples, depth, interlace)) if idat is None else idat
    # Two IDAT chunks, as readers must join them.
    out += chunk("IDAT", data[:len(data) // 2]) + chunk("IDAT", data[len(data) // 2:])
    return out + b"".join(after) + chunk("IEND", b"")


def variants(out_dir):
    rng = np.random.default_rng(7)
    listing, problems = [], []
    # Pillow's advice about converting palette_trns; its RGB conversion is still right.
    warnings.filterwarnings("ignore", "Palette images with Transparency")

    def add(name, data, rgb, text=None, pillow_same=True):
        path = os.path.join(out_dir, name + ".png")
        with open(path, "wb") as f:
            f.write(data)
        rgb = rgb.astype(np.uint8)
        with open(os.path.join(out_dir, name + ".rgb"), "wb") as f:
            f.write(rgb.tobytes())
        listing.append({"name": name, "width": rgb.shape[1], "height": rgb.shape[0],
                        "text": text or {}})
        if pillow_same:
            with Image.open(path) as img:
                if img.convert("RGB").tobytes() != rgb.tobytes():
                    problems.append(f"{name}: Pillow reads other pixels than expected")
                for k, v in (text or {}).items():
                    if img.info.get(k) != v:
                        problems.append(f"{name}: Pillow reads {k!r} as {img.info.get(k)!r}")

    def bad(name, data, error):
        with open(os.path.join(out_dir, name + ".png"), "wb") as f:
            f.write(data)
        listing.append({"name": name, "error": error})

    def gray3(g):
        return np.repeat(g[..., None], 3, axis=2)

    rgb8 = rng.integers(0, 256, (5, 7, 3))
    add("rgb8", png_file(rgb8, 2, 8), rgb8)
    rgba8 = rng.integers(0, 256, (5, 7, 4))
    add("rgba8_alpha_dropped", png_file(rgba8, 6, 8), rgba8[..., :3])
    gray8 = rng.integers(0, 256, (6, 3, 1))
    add("gray8", png_file(gray8, 0, 8), gray3(gray8[..., 0]))
    for depth in (1, 2, 4):
        g = rng.integers(0, 1 << depth, (4, 11, 1))
        # Low-depth gray scales to 8 bits by replication: v * 255 / (2^depth - 1).
        add(f"gray{depth}", png_file(g, 0, depth), gray3(g[..., 0] * 255 // ((1 << depth) - 1)))
    ga8 = rng.integers(0, 256, (3, 4, 2))
    add("gray_alpha8", png_file(ga8, 4, 8), gray3(ga8[..., 0]))
    palette = rng.integers(0, 256, (16, 3))
    idx = rng.integers(0, 16, (5, 9, 1))
    add("palette4", png_file(idx, 3, 4, palette=palette), palette[idx[..., 0]])
    add("palette8_trns", png_file(idx, 3, 8, palette=palette, trns=bytes(range(0, 160, 10))),
        palette[idx[..., 0]])
    rgb16 = rng.integers(0, 65536, (4, 5, 3))
    add("rgb16_high_byte", png_file(rgb16, 2, 16), rgb16 >> 8)
    rgba16 = rng.integers(0, 65536, (3, 2, 4))
    add("rgba16", png_file(rgba16, 6, 16), rgba16[..., :3] >> 8)
    g16 = rng.integers(0, 65536, (2, 3, 1))
    # Pillow clips 16-bit gray to 255 when converting; the high byte is the right value.
    add("gray16", png_file(g16, 0, 16), gray3(g16[..., 0] >> 8), pillow_same=False)
    rgb_i = rng.integers(0, 256, (11, 13, 3))
    add("rgb8_interlaced", png_file(rgb_i, 2, 8, interlace=True), rgb_i)
    idx_i = rng.integers(0, 4, (9, 10, 1))
    add("palette2_interlaced", png_file(idx_i, 3, 2, interlace=True, palette=palette[:4]),
        palette[:4][idx_i[..., 0]])

    one = rng.integers(0, 256, (1, 1, 3))
    text = {"Comment": "caf\u00e9 \u00a9", "zipped": "line 1\nline 2 \u00f1",
            "parameters": "a cat \u732b \U0001f431\nSteps: 20", "Title": "after the image"}
    add("text_kinds", png_file(one, 2, 8, before=[
        text_chunk("tEXt", "Comment", text["Comment"]),
        text_chunk("zTXt", "zipped", text["zipped"]),
        text_chunk("iTXt", "parameters", "an earlier value"),
        text_chunk("iTXt", "parameters", text["parameters"]),
        text_chunk("iTXt", "broken", "", valid_utf8=False),
    ], after=[text_chunk("tEXt", "Title", text["Title"])]), one, text)

    rows = image_data(rgb8, 8, False)
    bad("short_image_data", png_file(rgb8, 2, 8, idat=zlib.compress(rows[:len(rows) // 2])),
        "corrupt PNG")
    good = zlib.compress(rows)
    bad("bad_adler", png_file(rgb8, 2, 8, idat=good[:-1] + bytes([good[-1] ^ 1])), "corrupt PNG")
    bad("too_many_pixels", png_file(one, 2, 8, ihdr_size=(20000, 20000)),
        "image of 20000x20000 pixels is over the limit of 2^28")
    bad("zero_width", png_file(one, 2, 8, ihdr_size=(0, 1)), "corrupt PNG")
    bad("no_idat", PNG_SIGNATURE + png_file(one, 2, 8)[8:33] + chunk("IEND", b""), "corrupt PNG")

    with open(os.path.join(out_dir, "variants.json"), "w", encoding="utf-8") as f:
        json.dump(listing, f, ensure_ascii=False)
    for p in problems:
        print(f"png_check.py: {p}")
    return 1 if problems else 0


def postprocess(in_path, out_path):
    x = np.fromfile(in_path, dtype=np.float32)
    y = (x / np.float32(2) + np.float32(0.5)).clip(0, 1)
    assert y.dtype == np.float32
    (y * 255).round().astype(np.uint8).tofile(out_path)
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "verify":
        return verify(*args)
    if cmd == "variants":
        return variants(*args)
    if cmd == "postprocess":
        return postprocess(*args)
    if cmd == "sha256":
        h = hashlib.sha256()
        with open(args[0], "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        print(h.hexdigest())
        return 0
    print(f"png_check.py: unknown command {cmd}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
