#!/usr/bin/env python3
r"""Writes the CLIP tokenizer fixture: prompts and the ids transformers gives them.

usage: tokenizer.py TOKENIZER_DIR OUT.json
  TOKENIZER_DIR  the folder tools/clip_vocab.py writes (make puts it in build/clip-tokenizer)
  OUT.json       tests/fixtures/tokenizer/clip_ids.json

The reference is transformers' slow CLIPTokenizer loaded from that folder, without
ftfy (then CLIPTokenizer cleans text with BasicTokenizer: control characters removed,
whitespace normalised, spaces around CJK ideographs, NFC, lower case, no accent
stripping). Per prompt the fixture holds
  "padded": tokenizer(prompt, padding="max_length", max_length=77, truncation=True)
            .input_ids, as diffusers' StableDiffusionPipeline asks, and
  "ids":    tokenizer(prompt).input_ids without its BOS and EOS (all the tokens, so
            the count before truncation is tested too).
No prompt holds U+0000: a C string cannot carry it (BasicTokenizer removes it anyway).
The prompts are hand-written cases and prompts composed at random from fragments of
every kind below (seeded, so the output is the same on every run).

CLIPTokenizerFast (tokenizers 0.19.1, converted from the same files by transformers
4.44.2) is NOT the same tokenizer: it differs from the slow one on 1069 of this
fixture's 2175 prompts. Its normalizer is only NFC, \s+ -> " " and Lowercase, and it
matches special tokens on the raw text only, so:
  - it keeps control and format characters (C0/C1 controls such as \x07 and \x85,
    U+200D ZWJ inside emoji sequences, U+200B, U+FEFF, U+00AD soft hyphen, U+202E,
    private-use and unassigned code points), which BasicTokenizer removes: 766 prompts
    (115 of them also for the next reason);
  - it puts no spaces around CJK ideographs ("中文" is one pre-token there, two in the
    slow one): 241 prompts;
  - its Lowercase maps each code point alone, so a word-final capital sigma becomes σ
    where Python's str.lower gives ς ("ΟΔΟΣ" -> "οδοσ" vs "οδος"): 114 prompts;
  - the rest (63): special tokens in another case or broken by a removed character
    ("<|ENDOFTEXT|>", "<|endof\u200btext|>" are 49407 in the slow tokenizer, whose
    pattern matches them after cleanup, and BPE pieces in the fast one), "'ſ" and
    "<|ſtartoftext|>" (the slow pattern's IGNORECASE takes ſ for s), U+0345 (matched by
    no alternative of the slow pattern), and a combining mark right after a special
    token.
The script prints the current count and a few examples on every run.
"""
import json
import pathlib
import random
import sys
import unicodedata

import regex
import tokenizers
import transformers
from transformers import CLIPTokenizer, CLIPTokenizerFast

FORMAT_VERSION = 1
SEED = 20240917
N_RANDOM = 2100

HAND_WRITTEN = [
    "",
    " ",
    "\t\n ",
    "a photo of an astronaut riding a horse on mars",
    "A photo of sks dog in a bucket",
    "portrait of a woman, highly detailed, digital painting, artstation, concept art, "
    "smooth, sharp focus, illustration, art by greg rutkowski and alphonse mucha",
    "(masterpiece:1.2), best quality, ((ultra-detailed)), [lowres], {cat}",
    "cyberpunk city at night, neon lights, 8k uhd, dslr, soft lighting, film grain, Fujifilm XT3",
    "HDR photo of a RED Ferrari F40 on the Autobahn, 1987",
    "café crème brûlée à la française, naïve façade, jalapeño piñata, smörgåsbord",
    "cafe\u0301 cre\u0300me bru\u0302le\u0301e, n\u0303, A\u030a, o\u0308\u0304",
    "Ǆemal ǅ ǆ ﬁne ﬂower ﬀ ﬃ",
    "ÀÉÎÕÜ ÇÑ ÅØ ÆŒ Ÿ",
    "e\u0301\u0302\u0323 a\u0323\u0302 q\u0307\u0323 \u1e0b\u0323 \u0061\u0328\u0301",
    "한국어 프롬프트: 고양이가 우주에서 춤을 춘다",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab \u1100\u1173\u11af",
    "日本語のプロンプト、猫が宇宙で踊る。ひらがな カタカナ ｶﾀｶﾅ",
    "中文提示词：一只在太空跳舞的猫，高清，杰作",
    "漢字かな交じり文 𠀋𡈽𡌛 豈 更 車",
    "😀 🐱‍👤 👩‍👩‍👧‍👦 👍🏽 🇯🇵🇺🇸 🏳️‍🌈 ❤️ ✨ 🫨 🫠",
    "woman 👩🏻‍🦰 with a cat 🐈‍⬛ and a dog 🐕‍🦺",
    "!!!??? ... --- ___ *** ### $$$ %%% &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> ||| ~~~ ^^^",
    "a,b.c;d:e!f?g-h_i/j\\k|l@m#n$o%p^q&r*s(t)u[v]w{x}y<z>",
    "“smart quotes” ‘single’ — em dash – en dash … ellipsis «guillemets» ‹›",
    "1234567890 3.14159 1,000,000 2024-01-01 12:30pm 4K 1080p 16:9 0x1F",
    "٠١٢٣٤٥٦٧٨٩ ०१२३४५६७८९ ๐๑๒๓ ① ② ⑩ Ⅻ ½ ¾ ² ³",
    "it's don't you're we've I'm they'll he'd",
    "IT'S DON'T YOU'RE WE'VE I'M THEY'LL HE'D",
    "It'S dOn'T yOu'Re We'Ve i'M tHeY'lL hE'd 'S 'T",
    "rock'n'roll o'clock ma'am y'all 'tis '90s dogs' toys",
    "it’s don’t (curly apostrophe)",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic\u2003em\u2009thin",
    "   leading and trailing spaces   ",
    "multiple     spaces\t\t\ttabs\n\n\nnewlines",
    "line\u2028separator\u2029paragraph\u0085next\u000bvt\u000cff",
    "control\x01soh\x02stx\x07bell\x1bescape\x7fdel\x9fc1",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u00adsoft\u2060wj\u202eRLO",
    "private\ue000use\U000f0000and unassigned\U0001fff0\u0378",
    "replacement \ufffd character",
    "&amp; &lt;b&gt; &quot;quoted&quot; &#39;apos&#39; &nbsp; &copy; &#x1F600;",
    "<b>bold</b> <i>italic</i> <br/> <a href=\"x\">link</a>",
    "Привет мир, красивая девушка в лесу",
    "Ελληνικά: ΟΔΟΣ ΟΔΟΣ. ΣΊΣΥΦΟΣ Σ ΑΣ ΑΣ. ΑΣ' ΑΣ-Β Α.Σ ΣΑ",
    "مرحبا بالعالم، قطة جميلة",
    "नमस्ते दुनिया, सुंदर बिल्ली",
    "สวัสดีชาวโลก แมวน่ารัก",
    "עברית: חתול יפה",
    "ქართული ენა Հայերեն ᏣᎳᎩ ᚠᚢᚦ",
    "Ｆｕｌｌｗｉｄｔｈ　ｆｏｒｍｓ！　１２３　ＡＢＣ　ａｂｃ　（）［］",
    "İstanbul İİİ ıI DİYARBAKIR",
    "Straße STRASSE ẞ ß groß",
    "ﬃ ﬄ ǅ ǈ ǋ ǲ ᾈ ᾼ ῌ ῼ",
    "ΣΑΣ ΣΣ ΣΣΣ άΣ άΣα Σ̈ Α̈Σ ÀΣ́",
    "Kelvin K Ångström Å Ω ℃ ℉",
    "<|startoftext|>",
    "<|endoftext|>",
    "a <|startoftext|> b <|endoftext|> c",
    "a<|endoftext|>b<|startoftext|>c",
    "<|STARTOFTEXT|> <|EndOfText|>",
    "<|endof\x01text|> <|startof\u200btext|>",
    "<<|endoftext|>> |<|startoftext|>| <|<|endoftext|>",
    "<|ſtartoftext|> it'ſ",
    "x\u0345y ᾳ \u0345",
    "<\u0338 >\u0338 =\u0338 <|endoftext|>\u0338",
    "emoji👍in🎨middle🖼of😊words",
    "mixed日本語andEnglish中文text한국어",
    "ｔｅｓｔ１２３ｔｅｓｔ",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX!",
    "supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a" * 300,
    "!" * 200,
    "1" * 100,
    " ".join(["cat"] * 74),
    " ".join(["cat"] * 75),
    " ".join(["cat"] * 76),
    " ".join(["cat"] * 77),
    " ".join(["cat"] * 200),
    "word " * 120,
    "masterpiece, best quality, " * 20,
]

# Fragments for random prompts, by kind.
SUBJECTS = [
    "a cat", "an old man", "a castle", "the ocean", "a robot", "sks person", "a red car",
    "two dogs", "a bowl of ramen", "mount fuji", "a dragon", "the eiffel tower", "a forest",
    "a cute corgi", "an astronaut", "a wizard's tower", "a cozy cabin", "steampunk airship",
]
STYLES = [
    "oil painting", "watercolor", "digital art", "trending on artstation", "unreal engine 5",
    "octane render", "studio ghibli style", "by greg rutkowski", "cinematic lighting",
    "volumetric fog", "bokeh", "35mm film", "hyperrealistic", "low poly", "pixel art",
    "ukiyo-e", "art nouveau", "vaporwave", "concept art", "matte painting", "8k", "4k uhd",
]
WEIGHTED = ["(masterpiece:1.2)", "((best quality))", "[blurry]", "(detailed eyes:1.4)",
            "{{epic}}", "(((ultra detailed)))", "[[low quality]]", "(smile:0.8)"]
ACCENTED = ["café", "naïve", "résumé", "Zürich", "São Paulo", "Kraków", "Ærøskøbing",
            "cafe\u0301", "nai\u0308ve", "Zu\u0308rich", "Sa\u0303o", "Ångström",
            "A\u030angstro\u0308m",
            "Đà Nẵng", "Dža", "ḱṓṕ", "o\u0328\u0304", "ǭ", "ệ", "e\u0323\u0302", "e\u0302\u0323"]
CJK = ["猫", "宇宙", "高清壁纸", "杰作", "東京タワー", "さくら", "カタカナ", "ｶﾀｶﾅ", "한국", "서울의 밤",
       "漢字", "𠀋", "豈", "一二三", "ㄅㄆㄇ", "龍", "ｱｲｳ", "ㄱㄴㄷ", "\u1100\u1161", "가\u11a8"]
EMOJI = ["😀", "🐱", "👍🏽", "👩‍💻", "👨‍👩‍👧", "🇫🇷", "🏳️‍🌈", "❤️", "🔥", "✨", "🌸", "🤖",
         "🧑🏿‍🚀", "🫠", "🫨", "☕", "⭐", "1️⃣", "#️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
PUNCT = [",", ".", "!", "?", "...", "!!!", "?!", "--", "—", "–", ";", ":", "/", "\\", "|",
         "@", "#", "$", "%", "^", "&", "*", "~", "`", "'", '"', "“", "”", "«", "»", "¿", "¡",
         "·", "•", "→", "★", "©", "®", "™", "°", "±", "×", "÷", "§", "¶", "†"]
NUMBERS = ["0", "42", "1024", "3.5", "1,000", "2001", "1080p", "16:9", "x2", "v1.5", "50%",
           "٣", "७", "②", "Ⅳ", "½", "²", "１２", "1st", "20th"]
CONTRACTIONS = ["it's", "don't", "you're", "we've", "I'm", "they'll", "she'd", "IT'S",
                "DON'T", "YOU'RE", "WE'VE", "I'M", "THEY'LL", "SHE'D", "Can'T", "'s", "'ll",
                "o'neil", "rock'n'roll", "it’s"]
WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f",
              "\u2028", "\u1680", " \t ", "\u0085", "\x0b", "\x0c"]
CONTROL = ["\x01", "\x02", "\x07", "\x1b", "\x7f", "\x9f", "\u200b", "\u200d", "\ufeff",
           "\u00ad", "\u2060", "\u202e", "\ue000", "\ufffd", "\U000e0041", "\u061c"]
ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&nbsp;", "&copy;", "&#8217;",
            "&eacute;", "<br>", "</div>", "&amp;amp;"]
SCRIPTS = ["Москва", "ПРИВЕТ", "ёж", "Ελλάδα", "ΑΘΗΝΑ", "ΟΔΥΣΣΕΥΣ", "σοφία", "القاهرة",
           "مرحبا", "हिन्दी", "नमस्ते", "ภาษาไทย", "กรุงเทพ", "עברית", "Ꭰꮳ", "ᚠᛇ", "ქართული",
           "Հայաստան", "ܐܪܡܝܐ", "ދިވެހި", "ພາສາລາວ", "မြန်မာ", "ខ្មែរ", "ᠮᠣᠩᠭᠣᠯ"]
FULLWIDTH = ["ＡＢＣ", "ａｂｃ", "１２３", "！？", "（ｔｅｓｔ）", "ＳＤ１．５", "＃", "＠ｈｏｍｅ", "～", "　"]
CASING = ["İ", "İstanbul", "ı", "ß", "ẞ", "STRASSE", "ΣΑΣ", "ΟΔΟΣ", "ς", "Σ", "ǅ", "ǈ", "ﬃ",
          "ŉ", "ǰ", "ΐ", "ᾈ", "ῼ", "K", "Å", "Ω", "ⅷ", "Ⓐ", "ⓐ", "𐐀", "𞤀", "Ꭰ", "ꭰ"]
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|endoftext", "endoftext|>",
            "<|", "|>", "<|endof\u200btext|>"]

KINDS = {
    "subject": SUBJECTS, "style": STYLES, "weighted": WEIGHTED, "accented": ACCENTED,
    "cjk": CJK, "emoji": EMOJI, "punct": PUNCT, "number": NUMBERS,
    "contraction": CONTRACTIONS, "whitespace": WHITESPACE, "control": CONTROL,
    "entity": ENTITIES, "script": SCRIPTS, "fullwidth": FULLWIDTH, "casing": CASING,
    "special": SPECIALS,
}
SEPARATORS = [" ", ", ", ",", " ", ". ", " | ", "", "\n", ":", " - ", "  "]

# Code point ranges for "soup" prompts: random characters where normalisation, case
# and category tables matter most.
SOUP_RANGES = [
    (0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF),
    (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2150, 0x218F), (0x2460, 0x24FF),
    (0x3000, 0x30FF), (0xAC00, 0xAC40), (0x1100, 0x11FF), (0xFF00, 0xFFEF),
    (0x1F300, 0x1F6FF), (0x0590, 0x06FF), (0x0900, 0x097F), (0x0E00, 0x0E7F),
    (0x10400, 0x1044F), (0x1D400, 0x1D4FF), (0x1, 0x1F), (0x80, 0x9F),
]


def random_prompt(rng):
    style = rng.random()
    if style < 0.1:  # a soup of code points
        ranges = rng.sample(SOUP_RANGES, rng.randint(1, 4))
        chars = []
        for _ in range(rng.randint(1, 40)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        return "".join(chars)
    if style < 0.16:  # a long prompt, to be truncated
        n = rng.randint(30, 80)
    else:
        n = rng.randint(1, 14)
    kinds = list(KINDS)
    focus = rng.sample(kinds, rng.randint(1, 4))
    parts = []
    for _ in range(n):
        kind = rng.choice(focus) if rng.random() < 0.6 else rng.choice(kinds)
        frag = rng.choice(KINDS[kind])
        r = rng.random()
        if r < 0.1:
            frag = frag.upper()
        elif r < 0.15:
            frag = frag.title()
        parts.append(frag)
        parts.append(rng.choice(SEPARATORS))
    return "".join(parts[:-1])


def prompts():
    rng = random.Random(SEED)
    out = list(HAND_WRITTEN)
    # Prompts of exactly 74..78 words of one token each, around the 75-token limit.
    for n in range(70, 81):
        out.append(" ".join(rng.choice(["cat", "dog", "red", "sky", "a", ","]) for _ in range(n)))
    out += [random_prompt(rng) for _ in range(N_RANDOM)]
    # Every prompt once, in first-seen order.
    return list(dict.fromkeys(out))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: tokenizer.py TOKENIZER_DIR OUT.json")
    folder, out = sys.argv[1], pathlib.Path(sys.argv[2])
    slow = CLIPTokenizer.from_pretrained(folder)
    if slow.fix_text is not None:
        sys.exit("ftfy is installed: the reference must be CLIPTokenizer without ftfy")
    fast = CLIPTokenizerFast.from_pretrained(folder)
    max_length = slow.model_max_length
    cases, differ = [], []
    for prompt in prompts():
        padded = slow(prompt, padding="max_length", max_length=max_length,
                      truncation=True).input_ids
        full = slow(prompt).input_ids
        assert full[0] == slow.bos_token_id and full[-1] == slow.eos_token_id
        assert len(padded) == max_length
        cases.append({"prompt": prompt, "ids": full[1:-1], "padded": padded})
        if fast(prompt).input_ids != full:
            differ.append(prompt)
    print(f"{len(cases)} prompts; CLIPTokenizerFast differs on {len(differ)}, e.g.:")
    for prompt in differ[:8]:
        print("  ", ascii(prompt)[:100])
    versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "regex": regex.__version__, "unicodedata": unicodedata.unidata_version,
                "python": sys.version.split()[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        head = {"format_version": FORMAT_VERSION,
                "reference": "transformers.CLIPTokenizer (slow, no ftfy)",
                "versions": versions, "max_length": max_length}
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ',\n"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
