#!/usr/bin/env python3
"""The Python side of the safetensors interop test (tests/test_safetensors.c).

usage: safetensors_interop.py FILE EXPECTATIONS_JSON

Reads FILE, written by our C writer, with the reference `safetensors` package and
checks it against EXPECTATIONS_JSON:
  {"metadata": {...}, "tensors": {name: {"dtype": "F32", "shape": [...],
                                         "f32_bits": [...] | "values": ["-5", ...]}}}
Float tensors list the bit patterns of their values widened to f32, integer
tensors their values as decimal strings (exact for i64). It also checks that the
file is laid out exactly as the package lays out the same tensors itself.

Exit status: 0 when everything matches, 1 with one line per problem when not,
77 when numpy or safetensors is not installed.
"""
import json
import sys

try:
    import numpy as np
    import safetensors
except ImportError as e:
    print(f"safetensors_interop.py: {e}")
    sys.exit(77)

DTYPE_OF_NUMPY = {np.float32: "F32", np.float16: "F16", np.int32: "I32", np.int64: "I64"}
PACKAGE_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16",
                  "I32": "int32", "I64": "int64"}


def serialize(raw_tensors, metadata):
    """The package's own file for name -> (dtype, shape, bytes)."""
    if hasattr(safetensors, "TensorSpec"):  # 0.8 and later take raw pointers
        keep = {k: np.frombuffer(data, np.uint8).copy() for k, (_, _, data) in raw_tensors.items()}
        tensors = {k: safetensors.TensorSpec(dtype=PACKAGE_DTYPES[dt], shape=list(shape),
                                             data_ptr=keep[k].ctypes.data, data_len=len(data))
                   for k, (dt, shape, data) in raw_tensors.items()}
    else:
        tensors = {k: {"dtype": PACKAGE_DTYPES[dt], "shape": list(shape), "data": data}
                   for k, (dt, shape, data) in raw_tensors.items()}
    return bytes(safetensors.serialize(tensors, metadata=metadata or None))


def split(file_bytes):
    """(header members in order, padded header length, data section)."""
    n = int.from_bytes(file_bytes[:8], "little")
    members = json.loads(file_bytes[8:8 + n].decode("utf-8"), object_pairs_hook=list)
    return members, n, file_bytes[8 + n:]


def check_values(name, want, got_dtype, got_shape, got, problems):
    if got_dtype != want["dtype"] or list(got_shape) != want["shape"]:
        problems.append(f"{name}: {got_dtype} {list(got_shape)}, expected "
                        f"{want['dtype']} {want['shape']}")
        return
    if "f32_bits" in want:
        got_list = [int(b) for b in got]
        if got_list != want["f32_bits"]:
            problems.append(f"{name}: f32 bits {got_list}, expected {want['f32_bits']}")
    elif [str(v) for v in got] != want["values"]:
        problems.append(f"{name}: values {list(got)}, expected {want['values']}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, expectations = sys.argv[1], sys.argv[2]
    with open(expectations, encoding="utf-8") as f:
        expected = json.load(f)
    with open(path, "rb") as f:
        file_bytes = f.read()
    problems = []

    raw = dict(safetensors.deserialize(file_bytes))
    with safetensors.safe_open(path, framework="numpy") as f:
        metadata = f.metadata() or {}
        if metadata != expected["metadata"]:
            problems.append(f"metadata {metadata}, expected {expected['metadata']}")
        if sorted(f.keys()) != sorted(expected["tensors"]):
            problems.append(f"tensors {sorted(f.keys())}, expected {sorted(expected['tensors'])}")
        for name, want in expected["tensors"].items():
            if name not in raw:
                continue
            info = raw[name]
            if info["dtype"] == "BF16":  # numpy has no bfloat16: widen the raw bits
                bits = np.frombuffer(bytes(info["data"]), "<u2").astype(np.uint32) << 16
                check_values(name, want, "BF16", info["shape"], bits, problems)
                continue
            array = f.get_tensor(name)
            dtype = DTYPE_OF_NUMPY.get(array.dtype.type, str(array.dtype))
            flat = array.reshape(-1)
            if dtype.startswith("F"):
                got = flat.astype(np.float32).view(np.uint32)
            else:
                got = flat.tolist()
            check_values(name, want, dtype, array.shape, got, problems)

    # Same tensors through the package's own writer: the layout must agree.
    theirs = serialize({k: (v["dtype"], v["shape"], bytes(v["data"])) for k, v in raw.items()},
                       metadata)
    our_members, our_n, our_data = split(file_bytes)
    their_members, their_n, their_data = split(theirs)
    # The package keeps metadata in a hash map, so only its first position and its
    # contents can be compared, not its key order.
    if metadata and our_members[0][0] != "__metadata__":
        problems.append("__metadata__ is not the first header member")
    if dict(dict(our_members).get("__metadata__", [])) != metadata:
        problems.append("__metadata__ differs between the header and safe_open")
    ours = [m for m in our_members if m[0] != "__metadata__"]
    theirs = [m for m in their_members if m[0] != "__metadata__"]
    if ours != theirs:
        problems.append(f"tensor entries {ours}, the package writes {theirs}")
    if our_n != their_n or our_n % 8:
        problems.append(f"header is {our_n} bytes, the package writes {their_n}")
    if file_bytes[8:8 + our_n].rstrip(b" ")[-1:] != b"}":
        problems.append("header is not padded with spaces")
    if our_data != their_data:
        problems.append("data sections differ")

    for p in problems:
        print(f"safetensors_interop.py: {path}: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
