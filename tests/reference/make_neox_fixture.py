#!/usr/bin/env python3
"""Writes a small GPT-NeoX-style tokenizer.json and its expected encodings, from Hugging Face's
`tokenizers` (the implementation the 20B tokenizer file is made for; PyPI `tokenizers`, a one-off
like the cross-checks against the official rwkv package, not needed by `make test`).

The tokenizer has the 20B file's pipeline (docs/rwkv-spec.md section 11): NFC normaliser,
ByteLevel pre-tokeniser without prefix space, BPE over the byte-level alphabet, <|endoftext|> = 0
and <|padding|> = 1 as special added tokens, and the runs of 24 down to 2 spaces as normalised
added tokens. Its merges are trained on this repository's docs, so real words exercise them.

  make_neox_fixture.py OUT_DIR   -> tiny-neox-tokenizer.json, tiny-neox-cases.json
"""
import glob
import json
import os
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

CASES = [
    "Hello, world!",
    "\nThe following is a conversation.",
    "don't I'll we've they're she'd it's 'S CAN'T",
    "a  b   c    d",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\nnewlines\n\n\nend",
    "numbers 12345 3.14159 1,000,000",
    "Caf\u00e9 vs Cafe\u0301 (NFC composes the second)",
    "na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "emoji \U0001f600\U0001f680 and \u2764\ufe0f",
    "non\u00a0breaking\u3000ideographic\u2003em spaces",
    "text<|endoftext|>more<|padding|>",
    "<|endoftext|>",
    "symbols: @#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "mixed123abc ABC123 x=y+z",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u05e2\u05d1\u05e8\u05d9\u05ea \u0440\u0443\u0441\u0441\u043a\u0438\u0439",
    "User: Hi!\n\nAssistant: Hello! How can I help?",
    "                          twenty-six spaces before",
    " \n \n  x",
    "\n word and\ttab\t then",  # a whitespace run gives its last space to the next word
    "a\t b \t\nc",
    "",
]


def main(out):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    corpus = sorted(glob.glob(os.path.join(root, "docs", "*.md"))) + [os.path.join(root, "README.md")]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train(corpus, trainer)
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in range(24, 1, -1)])
    tok.save(os.path.join(out, "tiny-neox-tokenizer.json"))
    cases = []
    for text in CASES:
        ids = tok.encode(text).ids
        cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
    with open(os.path.join(out, "tiny-neox-cases.json"), "w") as f:
        json.dump({"note": "ids and decoded text from Hugging Face tokenizers " + __import__("tokenizers").__version__,
                   "cases": cases}, f, indent=1, ensure_ascii=False)
    print(f"vocab {tok.get_vocab_size()}, {len(cases)} cases")


if __name__ == "__main__":
    main(sys.argv[1])
