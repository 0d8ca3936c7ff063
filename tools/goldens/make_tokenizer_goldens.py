#!/usr/bin/env python3
"""Golden files for veomni's tokenizer (runtime/data/Tokenizer.h) against
Hugging Face `tokenizers` (PyPI; only to make these files).

For each style it trains a small byte-level BPE as the real models' files
are made, saves tokenizer.json, and encodes every paragraph of
test/goldens/tokenizers/corpus.txt (mixed scripts, whitespace runs,
digits, emoji, combining accents, special tokens) into <style>.ids: one
line of space-separated ids per paragraph.

  qwen2   Qwen2/2.5/3: NFC, Qwen2's Split regex, ByteLevel without regex,
          <|endoftext|>, <|im_start|>, <|im_end|> added
  llama3  Llama 3: no normalizer, Llama 3's Split regex,
          <|begin_of_text|>, <|eot_id|> added

    python3 tools/goldens/make_tokenizer_goldens.py
"""
import os

from tokenizers import (Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "test", "goldens", "tokenizers")

QWEN2 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
         r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
LLAMA3 = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"""
          r"""\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")

TRAIN = """The quick brown fox jumps over the lazy dog. Pack my box with five
dozen liquor jugs! How vexingly quick daft zebras jump; 1234567890 and
3.14159 are numbers. Ünïcödé, naïve café, résumé — «quotes» and ‘marks’.
日本語のテキストと中文文本，还有한국어 문장. Привет, мир! Γειά σου κόσμε.
Emoji 🙂🚀👍🏽 and symbols ∑∫√∞ ≠ ≤ ≥. Tabs\tand   spaces   and
newlines\n\n  indented code: for (int i = 0; i < n; ++i) { x += y; }
I'm, you're, they've, we'll, she'd, it's, DON'T, I'LL.
"""


def corpus():
    # newline="": CRLF stays as written.
    with open(os.path.join(OUT, "corpus.txt"), encoding="utf-8",
              newline="") as f:
        return [p for p in f.read().split("\n\n") if p.strip()]


def train(pattern, nfc, specials):
    tok = Tokenizer(models.BPE())
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TRAIN] * 20, trainer)
    return tok


def main():
    styles = {
        "qwen2": (QWEN2, True, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        "llama3": (LLAMA3, False, ["<|begin_of_text|>", "<|eot_id|>"]),
    }
    paragraphs = corpus()
    for name, (pattern, nfc, specials) in styles.items():
        tok = train(pattern, nfc, specials)
        tok.save(os.path.join(OUT, f"{name}.json"))
        with open(os.path.join(OUT, f"{name}.ids"), "w") as f:
            for p in paragraphs:
                f.write(" ".join(map(str, tok.encode(p).ids)) + "\n")
        print(name, len(paragraphs), "paragraphs")


if __name__ == "__main__":
    main()
