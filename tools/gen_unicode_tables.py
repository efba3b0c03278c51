#!/usr/bin/env python3
r"""Writes infer/unicode_tables.h and infer/unicode_tables.c: the Unicode data the CLIP
tokenizer (infer/tokenizer.c) needs to reproduce transformers' slow CLIPTokenizer.

usage: gen_unicode_tables.py OUT_DIR       (normally: infer)
run it with the reference interpreter, .venv-golden/bin/python: the tables are that
Python's Unicode data (its unicodedata module and str.lower) and that environment's
`regex` package (the module transformers compiles CLIP's pattern with), because
matching the reference means matching those exact versions, not the newest Unicode.
Besides `regex` it needs only the standard library. The output is deterministic.

What is taken from where, and why:
- unicodedata.category: BasicTokenizer drops every C* character but \t \n \r
  (Cn included: code points unassigned in this Python's Unicode version vanish) and
  turns Zs into a space; str.isspace splits the text into words.
- unicodedata.decomposition/normalize: canonical decompositions, combining classes and
  the primary composites (a pair whose NFC is itself), for NFC.
- str.lower, probed one code point at a time (full mappings: U+0130 becomes two code
  points), and Python's Final_Sigma rule, whose Cased and Case_Ignorable properties
  unicodedata does not expose: they are read back from how lower() treats a capital
  sigma after each code point.
- regex: [\p{L}], [\p{N}] and [^\s\p{L}\p{N}] under IGNORECASE, as CLIP's pattern
  uses them, asked of every code point (under IGNORECASE U+0345 matches none of the
  three), and the code points IGNORECASE equates with an ASCII letter (U+017F long s
  matches "s" in 's and <|startoftext|>).
"""
import pathlib
import sys
import unicodedata

import regex

SURROGATES = range(0xD800, 0xE000)
MAX_CP = 0x110000

# Property bits, one byte per code point (must match the header written below).
(REMOVED, CLEAN_SPACE, SPACE, LETTER, NUMBER, PUNCT, CASED,
 CASE_IGNORABLE) = (1 << i for i in range(8))


def flags_of(cp, re_letter, re_number, re_punct):
    c = chr(cp)
    cat = unicodedata.category(c)
    if cp == 0 or cp == 0xFFFD or (cat[0] == "C" and c not in "\t\n\r"):
        return REMOVED  # nothing else about it is ever looked at
    f = 0
    if c in " \t\n\r" or cat == "Zs":
        f |= CLEAN_SPACE
    if c.isspace():
        f |= SPACE
    if re_letter.fullmatch(c):
        f |= LETTER
    if re_number.fullmatch(c):
        f |= NUMBER
    if re_punct.fullmatch(c):
        f |= PUNCT
    # Final_Sigma: a capital sigma after a Cased letter (skipping Case_Ignorable
    # ones) lowers to the final form. After "A" it does so when c is either; after
    # "1" (neither) only when c is Cased and not Case_Ignorable.
    after_letter = ("A" + c + "\u03a3").lower()[-1] == "\u03c2"
    after_digit = ("1" + c + "\u03a3").lower()[-1] == "\u03c2"
    if after_digit:
        f |= CASED
    elif after_letter:
        f |= CASE_IGNORABLE
    return f


def flag_runs():
    re_letter = regex.compile(r"[\p{L}]", regex.IGNORECASE)
    re_number = regex.compile(r"[\p{N}]", regex.IGNORECASE)
    re_punct = regex.compile(r"[^\s\p{L}\p{N}]", regex.IGNORECASE)
    runs = []
    for cp in range(MAX_CP):
        f = REMOVED if cp in SURROGATES else flags_of(cp, re_letter, re_number, re_punct)
        if not runs or runs[-1][1] != f:
            runs.append((cp, f))
    return runs


def lower_tables():
    """Single code point lower cases as runs (first, last, stride, delta), and the
    few full mappings longer than one code point."""
    pairs, full = [], []
    for cp in range(MAX_CP):
        if cp in SURROGATES:
            continue
        low = chr(cp).lower()
        if len(low) > 1:
            full.append((cp, [ord(x) for x in low]))
        elif ord(low) != cp:
            pairs.append((cp, ord(low) - cp))
    runs = []
    for cp, delta in pairs:
        if runs:
            first, last, stride, d = runs[-1]
            gap = cp - last
            if d == delta and (stride == gap or (first == last and gap in (1, 2))):
                runs[-1] = (first, cp, gap, d)
                continue
        runs.append((cp, cp, 1, delta))
    return runs, full


def ccc_runs():
    runs = []
    for cp in range(MAX_CP):
        ccc = unicodedata.combining(chr(cp))
        if ccc and runs and runs[-1][1] == cp - 1 and runs[-1][2] == ccc:
            runs[-1] = (runs[-1][0], cp, ccc)
        elif ccc:
            runs.append((cp, cp, ccc))
    return runs


def decompositions():
    """Canonical decompositions (one level; Hangul syllables are computed, not
    listed) and the primary composites: the pairs NFC puts back together."""
    decomp, comp = [], []
    for cp in range(MAX_CP):
        if cp in SURROGATES or 0xAC00 <= cp <= 0xD7A3:
            continue
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert len(parts) in (1, 2), hex(cp)
        decomp.append((cp, parts[0], parts[1] if len(parts) == 2 else 0))
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(cp)) == chr(cp):
            comp.append((parts[0], parts[1], cp))
    comp.sort()
    return decomp, comp


def letter_folds():
    """Code points other than a letter and its capital that the case-insensitive
    pattern matches as that ASCII letter."""
    any_letter = regex.compile(r"[a-z]", regex.IGNORECASE)
    candidates = [cp for cp in range(0x80, MAX_CP)
                  if cp not in SURROGATES and any_letter.fullmatch(chr(cp))]
    folds = []
    for letter in sorted(set("startoftext" "endoftext" "strevmld")):
        pat = regex.compile(letter, regex.IGNORECASE)
        folds += [(cp, letter) for cp in candidates if pat.fullmatch(chr(cp))]
    return sorted(folds)


def rows(items, width=100):
    """The items, space-separated, in lines of at most width characters."""
    lines, line = [], "   "
    for item in items:
        if len(line) + 1 + len(item) > width:
            lines.append(line)
            line = "   "
        line += " " + item
    return "\n".join(lines + [line])


HEADER = """\
// GENERATED by tools/gen_unicode_tables.py from Python {py} (Unicode {ucd}, its
// unicodedata and str.lower) and the regex package {re} (the module transformers
// compiles CLIP's pattern with). Do not edit; regenerate with
//   .venv-golden/bin/python tools/gen_unicode_tables.py infer
// The tokenizer must see Unicode exactly as the reference environment does, so these
// are that environment's versions, not the newest Unicode.
#pragma once
#include <stdint.h>

// The fixture of tests/test_tokenizer.c records the versions it was made with.
#define UC_UNICODE_VERSION "{ucd}"
#define UC_REGEX_VERSION "{re}"

// Property bits of a code point.
enum {{
    UC_REMOVED = 1,          // BasicTokenizer drops it: C* except \\t \\n \\r, U+0000, U+FFFD
    UC_CLEAN_SPACE = 2,      // BasicTokenizer turns it into ' ': ' ' \\t \\n \\r and Zs
    UC_SPACE = 4,            // str.isspace(): where str.split() cuts words
    UC_LETTER = 8,           // regex [\\p{{L}}] under IGNORECASE
    UC_NUMBER = 16,          // regex [\\p{{N}}] under IGNORECASE
    UC_PUNCT = 32,           // regex [^\\s\\p{{L}}\\p{{N}}] under IGNORECASE
    UC_CASED = 64,           // Cased and not Case_Ignorable (Python's Final_Sigma rule)
    UC_CASE_IGNORABLE = 128, // Case_Ignorable
}};

// Code points [uc_flag_start[i], uc_flag_start[i + 1]) have the bits uc_flags[i]
// (the last run ends at 0x110000). A removed code point has no other bit.
extern const uint32_t uc_flag_start[];
extern const uint8_t uc_flags[];
extern const int uc_flag_runs;

// str.lower of one code point: cp + delta for cp in first, first + stride, ... last.
typedef struct {{
    uint32_t first, last, stride;
    int32_t delta;
}} uc_lower_run;
extern const uc_lower_run uc_lower_runs[];
extern const int uc_lower_run_count;

// The lower cases longer than one code point (U+0130 -> i + U+0307); to[] ends with 0.
typedef struct {{
    uint32_t cp, to[4];
}} uc_lower_full;
extern const uc_lower_full uc_lower_fulls[];
extern const int uc_lower_full_count;

// Canonical combining classes, as runs first..last of one class (0 elsewhere).
typedef struct {{
    uint32_t first, last;
    uint8_t ccc;
}} uc_ccc_run;
extern const uc_ccc_run uc_ccc_runs[];
extern const int uc_ccc_run_count;

// Canonical decompositions by cp, one level (second is 0 for a singleton); Hangul
// syllables are not listed (they decompose by arithmetic).
typedef struct {{
    uint32_t cp, first, second;
}} uc_decomp;
extern const uc_decomp uc_decomps[];
extern const int uc_decomp_count;

// Primary composites by (first, second): the pairs NFC composes.
typedef struct {{
    uint32_t first, second, composite;
}} uc_comp;
extern const uc_comp uc_comps[];
extern const int uc_comp_count;

// Non-ASCII code points the pattern's IGNORECASE matches as an ASCII letter, by cp.
typedef struct {{
    uint32_t cp;
    char letter;
}} uc_fold;
extern const uc_fold uc_folds[];
extern const int uc_fold_count;
"""


def write_source(path, runs, lower_runs, lower_full, cccs, decomp, comp, folds, stamp):
    out = [f"// GENERATED by tools/gen_unicode_tables.py ({stamp}).",
           "// See unicode_tables.h.",
           '#include "infer/unicode_tables.h"', ""]

    def array(decl, items, count_name):
        out.append(f"{decl} = {{")
        out.append(rows(items))
        out.append("};")
        out.append(f"const int {count_name} = {len(items)};")
        out.append("")

    out.append("const uint32_t uc_flag_start[] = {")
    out.append(rows([f"0x{cp:x}," for cp, _ in runs]))
    out.append("};")
    array("const uint8_t uc_flags[]", [f"{f}," for _, f in runs], "uc_flag_runs")
    array("const uc_lower_run uc_lower_runs[]",
          [f"{{0x{a:x}, 0x{b:x}, {s}, {d}}}," for a, b, s, d in lower_runs], "uc_lower_run_count")
    array("const uc_lower_full uc_lower_fulls[]",
          ["{0x%x, {%s}}," % (cp, ", ".join(f"0x{x:x}" for x in to)) for cp, to in lower_full],
          "uc_lower_full_count")
    array("const uc_ccc_run uc_ccc_runs[]",
          [f"{{0x{a:x}, 0x{b:x}, {c}}}," for a, b, c in cccs], "uc_ccc_run_count")
    array("const uc_decomp uc_decomps[]",
          [f"{{0x{cp:x}, 0x{a:x}, 0x{b:x}}}," for cp, a, b in decomp], "uc_decomp_count")
    array("const uc_comp uc_comps[]",
          [f"{{0x{a:x}, 0x{b:x}, 0x{c:x}}}," for a, b, c in comp], "uc_comp_count")
    array("const uc_fold uc_folds[]", [f"{{0x{cp:x}, '{l}'}}," for cp, l in folds],
          "uc_fold_count")
    path.write_text("\n".join(out))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_unicode_tables.py OUT_DIR")
    out = pathlib.Path(sys.argv[1])
    py = ".".join(map(str, sys.version_info[:3]))
    versions = dict(py=py, ucd=unicodedata.unidata_version, re=regex.__version__)
    runs = flag_runs()
    lower_runs, lower_full = lower_tables()
    assert all(len(to) < 4 for _, to in lower_full)
    decomp, comp = decompositions()
    (out / "unicode_tables.h").write_text(HEADER.format(**versions))
    stamp = "Python {py}, Unicode {ucd}, regex {re}".format(**versions)
    write_source(out / "unicode_tables.c", runs, lower_runs, lower_full, ccc_runs(), decomp,
                 comp, letter_folds(), stamp)


if __name__ == "__main__":
    main()
