// CLIP's byte-level BPE tokenizer, giving the ids transformers' (slow) CLIPTokenizer
// gives when ftfy is not installed, as diffusers' pipelines call it.
//
// The text goes through the reference's steps in its order: the special tokens
// (bos, eos, unk, pad and the folder's added tokens) are cut out of the raw text;
// each piece between them is cleaned as BasicTokenizer does (control characters,
// U+0000 and U+FFFD removed, whitespace made ' ', spaces around CJK ideographs, NFC,
// words split on whitespace and lower-cased with Python's str.lower), split by CLIP's
// pattern (`<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
// [^\s\p{L}\p{N}]+`, case-insensitive), and each piece's UTF-8 bytes are merged by
// the BPE ranks. The Unicode data is the reference environment's (infer/unicode_tables.h).
// Invalid UTF-8 decodes as Python's decode("utf-8", "replace") would (and U+FFFD is
// then removed, as above).
#pragma once
#include <stdint.h>

typedef struct clip_tokenizer clip_tokenizer;

// A diffusers `tokenizer/` folder: vocab.json, merges.txt, and (optional)
// tokenizer_config.json / special_tokens_map.json for model_max_length (77 when
// absent) and the bos/eos/unk/pad tokens (special_tokens_map.json overrides
// tokenizer_config.json unless that has added_tokens_decoder, as in transformers).
// NULL + err_set (one line naming the file) on bad input.
clip_tokenizer *clip_tokenizer_load(const char *dir);
void clip_tokenizer_free(clip_tokenizer *tok);

// ids[max_len]: BOS, the prompt's tokens (truncated to max_len-2), EOS, then pad ids, as
// the pipeline tokenizes. Returns the number of tokens the prompt had before truncation
// (without BOS/EOS).
int clip_tokenize_padded(const clip_tokenizer *tok, const char *text, int32_t *ids, int max_len);
// The prompt's BPE ids without BOS/EOS; *ids malloc'd (caller frees); returns the count.
int clip_tokenize(const clip_tokenizer *tok, const char *text, int32_t **ids);
int clip_tokenizer_max_length(const clip_tokenizer *tok);
// The id of a token string (a vocab.json key or an added token); -1 if absent.
int32_t clip_tokenizer_id(const clip_tokenizer *tok, const char *token);
// The merge-table lookups this thread's tokenizations have made so far: the BPE's
// work, which tests bound (a word of n bytes costs at most 3n), as timing would
// depend on the machine.
uint64_t clip_tokenizer_pair_lookups(void);
