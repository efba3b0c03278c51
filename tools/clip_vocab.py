#!/usr/bin/env python3
"""Derives a diffusers/transformers `tokenizer/` folder for CLIP ViT-L/14 (the text
encoder of Stable Diffusion 1.x) from OpenAI's BPE file.

usage: clip_vocab.py SRC.gz OUTDIR

SRC.gz is OpenAI's bpe_simple_vocab_16e6.txt.gz (MIT licensed; never committed here,
nor anything derived from it). OUTDIR receives:

  merges.txt               "#version: 0.2", then the first 48894 merges of SRC.gz
                           (49152 ids - 256 bytes - 2 specials), as OpenAI's
                           simple_tokenizer and transformers' CLIPTokenizer read them
  vocab.json               49408 ids: the 256 byte characters of bytes_to_unicode, the
                           same with "</w>", one token per merge (its two halves
                           joined), then <|startoftext|> 49406 and <|endoftext|> 49407
  tokenizer_config.json    as the SD1.5 tokenizer folder has them: model_max_length 77,
  special_tokens_map.json  bos <|startoftext|>, eos/unk/pad <|endoftext|>, lower case

Standard library only.
"""
import gzip
import json
import pathlib
import sys

N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def bytes_to_unicode():
    """GPT-2's reversible map from bytes to printable characters: the printable
    Latin-1 bytes map to themselves, the other 68 to U+0100 onwards in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def read_merges(src):
    try:
        lines = gzip.open(src).read().decode("utf-8").split("\n")
    except OSError as e:
        sys.exit(f"{src}: cannot read OpenAI's BPE file: {e}")
    merges = [tuple(line.split()) for line in lines[1:1 + N_MERGES]]
    if len(merges) != N_MERGES or any(len(m) != 2 for m in merges):
        sys.exit(f"{src}: expected {N_MERGES} merges of two symbols after the first line")
    return merges


def build_vocab(merges):
    # Byte characters in code point order: the printable bytes (themselves) first,
    # then U+0100 onwards, which is the order of OpenAI's vocabulary.
    chars = sorted(bytes_to_unicode().values(), key=ord)
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        sys.exit("duplicate tokens in the derived vocabulary")
    return vocab


def added_token(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False,
            "single_word": False}


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    src, out = sys.argv[1], pathlib.Path(sys.argv[2])
    merges = read_merges(src)
    vocab = build_vocab(merges)
    out.mkdir(parents=True, exist_ok=True)
    (out / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    write_json(out / "special_tokens_map.json", {
        "bos_token": added_token(BOS), "eos_token": added_token(EOS),
        "pad_token": EOS, "unk_token": added_token(EOS)})
    tokens = {"bos_token": {"__type": "AddedToken", **added_token(BOS)},
              "eos_token": {"__type": "AddedToken", **added_token(EOS)},
              "unk_token": {"__type": "AddedToken", **added_token(EOS)}}
    write_json(out / "tokenizer_config.json", {
        "add_prefix_space": False, "bos_token": tokens["bos_token"], "do_lower_case": True,
        "eos_token": tokens["eos_token"], "errors": "replace", "model_max_length": MAX_LENGTH,
        "name_or_path": "openai/clip-vit-large-patch14", "pad_token": EOS,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer", "unk_token": tokens["unk_token"]})


if __name__ == "__main__":
    main()
