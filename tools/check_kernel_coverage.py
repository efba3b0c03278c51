#!/usr/bin/env python3
"""Fails unless every __global__ kernel in kernels/cuda/*.cu ran.

usage: check_kernel_coverage.py OBJECT_DIR
OBJECT_DIR holds the emulated kernel objects of a --coverage build after the test
suite ran (make kernel-coverage does both). A kernel counts as run when any of its
template instances executed a line.
"""
import gzip
import json
import pathlib
import re
import subprocess
import sys
import tempfile


def kernels_in(source):
    """Names of the __global__ functions defined in a .cu file."""
    text = re.sub(r"//[^\n]*", "", source.read_text())
    names = set()
    for match in re.finditer(r"__global__(.*?)\(", text, re.S):
        head = match.group(1)
        if "__launch_bounds__" in head:  # the name follows the bounds' parentheses
            rest = text[match.end():]
            depth, i = 1, 0
            while depth:
                depth += {"(": 1, ")": -1}.get(rest[i], 0)
                i += 1
            head = rest[i:rest.index("(", i)]
        names.add(re.findall(r"[A-Za-z_]\w*", head)[-1])
    return names


def executed_functions(source, object_dir):
    """Base names of the functions of source that executed, per gcov's JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["gcov", "-j", "-o", str(object_dir.resolve()), str(source.resolve())],
                       cwd=tmp, capture_output=True, check=True)
        ran = set()
        for report in pathlib.Path(tmp).glob("*.gcov.json.gz"):
            for entry in json.load(gzip.open(report))["files"]:
                for fn in entry.get("functions", []):
                    if fn["execution_count"] == 0:
                        continue
                    # "void (anonymous namespace)::name<float>(float*, ...)" -> "name"
                    name = fn["demangled_name"].replace("(anonymous namespace)::", "")
                    match = re.search(r"([A-Za-z_]\w*)\s*(?:<.*?>)?\s*\(", name)
                    if match:
                        ran.add(match.group(1))
        return ran


def main():
    object_dir = pathlib.Path(sys.argv[1])
    missing, total = [], 0
    for source in sorted(pathlib.Path("kernels/cuda").glob("*.cu")):
        kernels = kernels_in(source)
        total += len(kernels)
        ran = executed_functions(source, object_dir) if kernels else set()
        missing += [f"{source.name}: {k}" for k in sorted(kernels - ran)]
    if missing:
        print(f"{len(missing)} of {total} __global__ kernels never ran in the tests:")
        print("\n".join("  " + m for m in missing))
        sys.exit(1)
    print(f"all {total} __global__ kernels in kernels/cuda ran in the tests (cuda-emu)")


if __name__ == "__main__":
    main()
