#!/usr/bin/env python3
"""Writes safetensors fixtures with the reference Python package, for
tests/test_safetensors.c to read.

usage: safetensors_files.py OUT_DIR        (make golden passes tests/fixtures/safetensors)

Files written:
  reference.safetensors     f32, f16, bf16, i32, i64 tensors (with a 0-dim scalar, a
                            zero-size tensor, awkward values and a non-ASCII name) and
                            metadata that needs JSON escaping
  other_dtypes.safetensors  dtypes that are valid safetensors but not ones sdft
                            computes with (U8, F64, BOOL, F8_E4M3, F4, ...)
  empty.safetensors         no tensors, no metadata
  expected.json             per file: metadata, tensor names in data order, and per
                            tensor its dtype, shape and raw little-endian bytes (hex);
                            float tensors also carry "f32_bits", the bit patterns of
                            their values widened to f32

numpy has no bfloat16, so bf16 bits are made here from f32 values with
round-to-nearest-even and handed to the package as raw bytes, and their f32
values are simply bits << 16.
"""
import json
import pathlib
import sys

import numpy as np
import safetensors


def serialize_file(tensors, path, metadata=None):
    """tensors: name -> (package dtype name, shape, raw bytes)."""
    if hasattr(safetensors, "TensorSpec"):  # 0.8 and later take raw pointers
        keep = {k: np.frombuffer(raw, np.uint8).copy() for k, (_, _, raw) in tensors.items()}
        specs = {
            k: safetensors.TensorSpec(dtype=dt, shape=list(shape),
                                      data_ptr=keep[k].ctypes.data, data_len=len(raw))
            for k, (dt, shape, raw) in tensors.items()
        }
        safetensors.serialize_file(specs, str(path), metadata=metadata)
    else:
        flat = {k: {"dtype": dt, "shape": list(shape), "data": raw}
                for k, (dt, shape, raw) in tensors.items()}
        safetensors.serialize_file(flat, str(path), metadata=metadata)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even of float32 values to bfloat16 bits; NaN stays a quiet NaN."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    quiet_nan = (u >> 16) | 0x40
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def f32_from_bits(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def reference_tensors():
    """name -> (package dtype, shape, numpy array of the stored values, f32 values or None)."""
    rng = np.random.default_rng(20240601)
    special = np.array([0.0, -0.0, 1.0, -2.5, 1 / 3, 1e-40, 1e-45, 3.4028235e38,
                        np.inf, -np.inf, np.nan, 123456.789], dtype=np.float32)
    f32 = np.concatenate([special, rng.standard_normal(12).astype(np.float32)]).reshape(2, 3, 4)

    with np.errstate(over="ignore"):  # 65520 rounds to inf on purpose
        f16 = np.array([0.0, -0.0, 1 / 3, 65504.0, 65520.0, 6e-8, -6.1e-5, np.nan,
                        np.inf, -1.0, 0.1, 2049.0], dtype=np.float32).astype(np.float16)
    f16 = f16.reshape(3, 4)

    # The bit patterns 0x3f808000 and 0x3f818000 sit exactly halfway between two
    # bf16 values: ties to even go down for the first and up for the second.
    bf16_source = np.concatenate([
        f32_from_bits([0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x00000001, 0x7FC00001]),
        np.array([-0.0, 1 / 3, -7.25, np.inf, 1e-39], dtype=np.float32)])
    bf16 = f32_to_bf16_bits(bf16_source).reshape(2, 5)

    i32 = np.array([-(2**31), -1, 0, 1, 2**31 - 1, 123456789], dtype=np.int32).reshape(2, 3)
    i64 = np.array([-(2**63), -(2**53) - 1, 0, 2**53 + 1, 2**63 - 1], dtype=np.int64)

    return {
        "f32": ("float32", f32.shape, f32, f32),
        "f16": ("float16", f16.shape, f16, f16.astype(np.float32)),
        "bf16": ("bfloat16", bf16.shape, bf16, (bf16.astype(np.uint32) << 16).view(np.float32)),
        "i32": ("int32", i32.shape, i32, None),
        "i64": ("int64", i64.shape, i64, None),
        "scalar": ("float32", (), np.array(42.5, dtype=np.float32), np.float32(42.5)),
        "empty": ("float32", (0, 3), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)),
        "text_encoder.tök.weight": ("float16", (1, 2), np.array([[1.5, -2.0]], np.float16),
                                    np.array([[1.5, -2.0]], np.float32)),
    }


def other_dtype_tensors():
    """name -> (package dtype, shape, numpy array of the stored bytes)."""
    return {
        "u8": ("uint8", (5,), np.array([0, 1, 127, 128, 255], np.uint8)),
        "i8": ("int8", (2, 2), np.array([[-128, -1], [0, 127]], np.int8)),
        "i16": ("int16", (2,), np.array([-32768, 32767], np.int16)),
        "u16": ("uint16", (1,), np.array([65535], np.uint16)),
        "u32": ("uint32", (1,), np.array([4294967295], np.uint32)),
        "u64": ("uint64", (1,), np.array([2**64 - 1], np.uint64)),
        "f64": ("float64", (3,), np.array([1 / 3, -0.0, 1e300], np.float64)),
        "bool": ("bool", (4,), np.array([True, False, False, True])),
        "f8": ("float8_e4m3fn", (3,), np.array([0x38, 0x7E, 0x80], np.uint8)),
        # Two F4 values per byte: the package stores shape (2,) of bytes as [4] elements.
        "f4": ("float4_e2m1fn_x2", (2,), np.array([0x21, 0xF7], np.uint8)),
    }


def describe(path, tensors_f32=None):
    """What a reader must find in the file, as the package itself reads it."""
    with safetensors.safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
        order = f.offset_keys()
    raw = {name: info for name, info in safetensors.deserialize(path.read_bytes())}
    tensors = {}
    for name in order:
        info = raw[name]
        entry = {"dtype": info["dtype"], "shape": list(info["shape"]),
                 "hex": bytes(info["data"]).hex()}
        if tensors_f32 and tensors_f32.get(name) is not None:
            values = np.asarray(tensors_f32[name], dtype=np.float32)
            entry["f32_bits"] = [int(b) for b in values.reshape(-1).view(np.uint32)]
        tensors[name] = entry
    return {"metadata": metadata, "order": order, "tensors": tensors}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    expected = {}

    ref = reference_tensors()
    path = out / "reference.safetensors"
    serialize_file({k: (dt, shape, np.ascontiguousarray(v).tobytes())
                    for k, (dt, shape, v, _) in ref.items()}, path,
                   metadata={"format": "pt",
                             "note": 'quote " backslash \\ newline \n tab \t unicode é ✓'})
    expected[path.name] = describe(path, {k: f for k, (_, _, _, f) in ref.items()})

    other = other_dtype_tensors()
    path = out / "other_dtypes.safetensors"
    serialize_file({k: (dt, shape, v.tobytes()) for k, (dt, shape, v) in other.items()}, path,
                   metadata={"format": "np"})
    expected[path.name] = describe(path)

    path = out / "empty.safetensors"
    serialize_file({}, path)
    expected[path.name] = describe(path)

    text = json.dumps(expected, indent=1, ensure_ascii=False) + "\n"
    (out / "expected.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(expected)} fixtures to {out} with safetensors {safetensors.__version__}")


if __name__ == "__main__":
    main()
