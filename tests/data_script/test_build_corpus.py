#!/usr/bin/env python3
"""Tests for scripts/build_corpus.py on a small (--max-words 200) corpus.

Checks: same seed -> byte-identical output; every line is valid JSON with roles in the allowed
order; validation words (recomputed here from WordNet's index files with the documented rule)
never appear in a training user message; stats.json agrees with the files; the licence travels;
a missing WordNet directory gives one clear error.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import unittest

ARGS = None
WORDNET = "/usr/share/wordnet"
VALID_FRACTION = 0.1  # more validation words than the default 3 %, so the leak check has teeth
FILES = ("train.jsonl", "valid.jsonl", "tokenizer_text.txt", "stats.json", "WORDNET_LICENSE.txt")


def run_script(out, seed=7, extra=()):
    cmd = [sys.executable, ARGS.script, "--out", out, "--seed", str(seed), "--max-words", "200",
           "--valid-fraction", str(VALID_FRACTION), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh.read().splitlines()]


def all_lemmas():
    """Every WordNet lemma, and the validation ones by the rule in docs/corpus.md
    (sha256(lemma) read as a fraction < --valid-fraction), reimplemented here on purpose."""
    lemmas, valid = set(), set()
    for pos in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(WORDNET, "index." + pos), encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("  ") or not line.strip():
                    continue
                lemma = line.split(" ", 1)[0].replace("_", " ")
                lemmas.add(lemma)
                h = hashlib.sha256(lemma.encode("utf-8")).digest()
                if int.from_bytes(h[:8], "big") / 2.0 ** 64 < VALID_FRACTION:
                    valid.add(lemma)
    return lemmas, valid


def lemma_spans(text, lemmas, max_n=6):
    """Maximal word spans of text that are WordNet lemmas (not inside a longer lemma span)."""
    words = [w.strip('"?,!') for w in text.lower().split()]
    spans = []
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + max_n) + 1):
            cand = " ".join(words[i:j])
            for c in {cand, cand.rstrip(".")}:
                if c in lemmas:
                    spans.append((i, j, c))
    return [s for s in spans
            if not any(o[0] <= s[0] and s[1] <= o[1] and (o[1] - o[0]) > (s[1] - s[0])
                       for o in spans)]


def mentions_word(text, word):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text, re.I) is not None


class CorpusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(ARGS.work, ignore_errors=True)
        cls.a = os.path.join(ARGS.work, "a")
        cls.b = os.path.join(ARGS.work, "b")
        cls.c = os.path.join(ARGS.work, "c")
        for d, seed in ((cls.a, 7), (cls.b, 7), (cls.c, 8)):
            r = run_script(d, seed)
            if r.returncode != 0:
                raise AssertionError(f"build_corpus.py failed:\n{r.stdout}\n{r.stderr}")
        cls.train = read_jsonl(os.path.join(cls.a, "train.jsonl"))
        cls.valid = read_jsonl(os.path.join(cls.a, "valid.jsonl"))

    def test_deterministic_for_same_seed(self):
        for name in FILES:
            with open(os.path.join(self.a, name), "rb") as fa, \
                    open(os.path.join(self.b, name), "rb") as fb:
                self.assertEqual(fa.read(), fb.read(), name)
        with open(os.path.join(self.a, "train.jsonl"), "rb") as fa, \
                open(os.path.join(self.c, "train.jsonl"), "rb") as fc:
            self.assertNotEqual(fa.read(), fc.read(), "a different seed should change the corpus")

    def test_roles_in_order(self):
        for split, convs in (("train", self.train), ("valid", self.valid)):
            self.assertGreater(len(convs), 0, split)
            for n, conv in enumerate(convs):
                self.assertEqual(set(conv), {"messages"}, f"{split}:{n}")
                roles = [m["role"] for m in conv["messages"]]
                for m in conv["messages"]:
                    self.assertEqual(set(m), {"role", "content"})
                    self.assertIsInstance(m["content"], str)
                    self.assertTrue(m["content"].strip(), f"{split}:{n} empty content")
                    self.assertNotIn("\n", m["content"])
                    self.assertNotIn("_", m["content"], f"{split}:{n} lemma underscore left")
                body = roles[1:] if roles and roles[0] == "system" else roles
                self.assertGreaterEqual(len(body), 2, f"{split}:{n} {roles}")
                self.assertEqual(len(body) % 2, 0, f"{split}:{n} {roles}")
                for i, r in enumerate(body):
                    self.assertEqual(r, "user" if i % 2 == 0 else "assistant", f"{split}:{n} {roles}")

    def test_some_variety(self):
        convs = self.train + self.valid
        self.assertTrue(any(c["messages"][0]["role"] == "system" for c in convs))
        self.assertTrue(any(len(c["messages"]) >= 5 for c in convs), "no multi-turn conversation")
        firsts = {re.sub(r"\W", "", c["messages"][-2]["content"].split(" ")[0]) for c in convs}
        self.assertGreater(len(firsts), 5, "user questions are not varied")

    def test_validation_words_not_in_training_questions(self):
        lemmas, valid_lemmas = all_lemmas()
        questions = [(split, m["content"]) for split, convs in (("train", self.train),
                                                                 ("valid", self.valid))
                     for c in convs for m in c["messages"] if m["role"] == "user"]
        # Words of the question templates themselves ("part of speech") are in a large share of
        # all questions; they are not subjects.
        counts = {}
        for _, q in questions:
            for w in set(q.lower().split()):
                counts[w] = counts.get(w, 0) + 1
        template = {w for w, n in counts.items() if n >= 0.02 * len(questions)}
        seen_valid = set()
        for split, q in questions:
            words = q.lower().split()
            for i, j, lemma in lemma_spans(q, lemmas):
                if all(w in template for w in words[i:j]):
                    continue
                if split == "valid":
                    seen_valid.add(lemma in valid_lemmas)
                elif lemma in valid_lemmas:
                    self.fail(f"validation word {lemma!r} asked about in training: {q!r}")
        self.assertIn(True, seen_valid, "no validation word found in validation questions")

    def test_stats_and_tokenizer_text(self):
        with open(os.path.join(self.a, "stats.json"), encoding="utf-8") as fh:
            stats = json.load(fh)
        self.assertEqual(stats["splits"]["train"]["conversations"], len(self.train))
        self.assertEqual(stats["splits"]["valid"]["conversations"], len(self.valid))
        words = stats["splits"]["train"]["words"] + stats["splits"]["valid"]["words"]
        self.assertLessEqual(words, 200)
        self.assertGreater(words, 150)
        with open(os.path.join(self.a, "tokenizer_text.txt"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        self.assertEqual(lines, [m["content"] for c in self.train for m in c["messages"]])

    def test_licence_travels(self):
        with open(os.path.join(self.a, "WORDNET_LICENSE.txt"), encoding="utf-8") as fh:
            text = fh.read()
        self.assertIn("WordNet 3.0 Copyright 2006 by Princeton University", text)
        self.assertIn("Permission to use, copy, modify and distribute", text)

    def test_missing_wordnet_is_a_clear_error(self):
        empty = os.path.join(ARGS.work, "empty_wordnet")
        os.makedirs(empty, exist_ok=True)
        r = run_script(os.path.join(ARGS.work, "bad"), extra=("--wordnet-dir", empty))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("apt-get install wordnet-base", r.stderr)
        self.assertIn("data.noun", r.stderr)
        self.assertNotIn("Traceback", r.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--work", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0], "-v", *rest])
