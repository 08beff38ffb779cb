#!/usr/bin/env python3
"""Build the chat corpus for the built-in demo model from WordNet (Debian package wordnet-base).

Reads the WordNet 3.0 database files (data.* and index.* under --wordnet-dir), turns every lemma
into one or more short dictionary-style chat conversations, and writes to --out:

  train.jsonl, valid.jsonl   one conversation per line: {"messages": [{"role": ..., "content": ...}]}
  tokenizer_text.txt         every message content of the TRAIN split, one per line (tokenizer input)
  stats.json                 counts per split (words, conversations, messages, characters, bytes)
  WORDNET_LICENSE.txt        WordNet's licence notice, which must travel with the model

The validation split is chosen BY WORD: a lemma goes to validation when a hash of the lemma falls
below --valid-fraction, so validation measures generalisation to unseen words and the split does not
move when --seed or --max-words change. Output is deterministic given --seed.

Standard library only (python3 >= 3.9).
"""

import argparse
import hashlib
import json
import os
import random
import re
import sys
import tempfile

POS_FILES = ("noun", "verb", "adj", "adv")
POS_NAME = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}
# Satellite adjectives ('s') live in data.adj; pointers name them with 's' or 'a'.
POS_FILE_KEY = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}
FILE_POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}

SYSTEM_PROMPTS = (
    "You are a helpful dictionary assistant.",
    "You are a helpful assistant that explains the meaning of English words.",
    "You are a concise dictionary. Answer in one or two sentences.",
    "You help people understand English words.",
    "You are a friendly assistant. Keep your answers short.",
)
SYSTEM_PROMPT_FRACTION = 0.2
MULTI_TURN_FRACTION = 0.3
EXTRA_CONVERSATION_FRACTION = 0.5
MAX_DEF_CHARS = 160

ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")


class CorpusError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# WordNet parsing


class Synset:
    __slots__ = ("pos", "words", "pointers", "definitions", "examples")

    def __init__(self, pos, words, pointers, definitions, examples):
        self.pos = pos                  # 'n', 'v', 'a', 's', 'r'
        self.words = words              # display forms, '_' replaced by ' '
        self.pointers = pointers        # list of (symbol, file_key, offset, source_word, target_word)
        self.definitions = definitions  # list of str
        self.examples = examples        # list of str


def split_gloss(gloss):
    """Split '| def; def; "example"; "example"' on ';' outside double quotes."""
    gloss = gloss.replace("`", "'")  # WordNet quotes words as `word'
    if '"' not in gloss:  # most glosses (nouns especially) have no examples: fast path
        parts = [p.strip() for p in gloss.split(";")]
    else:
        parts, start, in_quote = [], 0, False
        for i, ch in enumerate(gloss):
            if ch == '"':
                in_quote = not in_quote
            elif ch == ";" and not in_quote:
                parts.append(gloss[start:i].strip())
                start = i + 1
        parts.append(gloss[start:].strip())
    definitions, examples = [], []
    for p in parts:
        if not p:
            continue
        if p.startswith('"'):
            end = p.rfind('"')
            ex = p[1:end].strip() if end > 0 else p[1:].strip()
            if ex:
                examples.append(ex)
        elif '"' not in p:
            definitions.append(p)
    return definitions, examples


def parse_data_line(line, path, lineno, file_pos):
    def fail(msg):
        raise CorpusError(f"{path}:{lineno}: malformed WordNet data line: {msg}")

    bar = line.find(" | ")
    if bar < 0:
        head, gloss = line, ""
    else:
        head, gloss = line[:bar], line[bar + 3:]
    f = head.split()
    if len(f) < 6:
        fail("too few fields")
    try:
        offset = int(f[0])
        ss_type = f[2]
        w_cnt = int(f[3], 16)
    except ValueError:
        fail("bad offset or word count")
    if ss_type not in POS_NAME or POS_FILE_KEY[ss_type] != file_pos:
        fail(f"ss_type {ss_type!r} does not belong in this file")
    i = 4
    if w_cnt < 1 or i + 2 * w_cnt + 1 > len(f):
        fail("word list runs past end of line")
    words = []
    for k in range(w_cnt):
        w = f[i + 2 * k]
        if ss_type in "as":
            w = ADJ_MARKER.sub("", w)
        words.append(w.replace("_", " "))
    i += 2 * w_cnt
    try:
        p_cnt = int(f[i])
    except ValueError:
        fail("bad pointer count")
    i += 1
    if i + 4 * p_cnt > len(f):
        fail("pointer list runs past end of line")
    pointers = []
    for k in range(p_cnt):
        sym, off, pos, st = f[i:i + 4]
        i += 4
        if pos not in POS_FILE_KEY or len(st) != 4:
            fail(f"bad pointer {sym} {off} {pos} {st}")
        try:
            pointers.append((sym, POS_FILE_KEY[pos], int(off), int(st[:2], 16), int(st[2:], 16)))
        except ValueError:
            fail(f"bad pointer {sym} {off} {pos} {st}")
    # Verb frames (f_cnt + f_num w_num ...) follow in data.verb; they are not used here.
    definitions, examples = split_gloss(gloss.strip())
    return offset, Synset(ss_type, words, pointers, definitions, examples)


def read_lines(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as fh:
            return fh.read().split("\n")
    except FileNotFoundError:
        raise CorpusError(
            f"{path}: WordNet file missing; install wordnet-base: apt-get install wordnet-base "
            f"(or pass --wordnet-dir)")
    except OSError as e:
        raise CorpusError(f"{path}: cannot read: {e.strerror}")


def load_wordnet(wn_dir):
    synsets = {}      # (file_key, offset) -> Synset
    index = {}        # lemma (lowercase, spaces) -> list of (file_key, offset) in sense order
    license_lines = []
    for name in POS_FILES:
        fkey = FILE_POS[name]
        path = os.path.join(wn_dir, "data." + name)
        for lineno, line in enumerate(read_lines(path), 1):
            if not line:
                continue
            if line.startswith("  "):  # licence header: "  N text  "
                if name == "noun":
                    m = re.match(r"\s+\d+ ?(.*?)\s*$", line)
                    license_lines.append(m.group(1) if m else line.strip())
                continue
            off, ss = parse_data_line(line, path, lineno, fkey)
            synsets[(fkey, off)] = ss
        path = os.path.join(wn_dir, "index." + name)
        for lineno, line in enumerate(read_lines(path), 1):
            if not line or line.startswith("  "):
                continue
            f = line.split()
            try:
                p_cnt = int(f[3])
                synset_cnt = int(f[2])
                offs = f[4 + p_cnt + 2:]
                if len(offs) != synset_cnt:
                    raise ValueError
                offs = [int(o) for o in offs]
            except (ValueError, IndexError):
                raise CorpusError(f"{path}:{lineno}: malformed WordNet index line")
            for o in offs:
                if (fkey, o) not in synsets:
                    raise CorpusError(f"{path}:{lineno}: synset offset {o} not in data.{name}")
            lemma = f[0].replace("_", " ")
            index.setdefault(lemma, []).extend((fkey, o) for o in offs)
    if not synsets or not index:
        raise CorpusError(f"{wn_dir}: no WordNet synsets found; install wordnet-base: "
                          f"apt-get install wordnet-base")
    return synsets, index, license_lines


# ----------------------------------------------------------------------------------------------
# Facts about one lemma


def in_valid(lemma, fraction):
    h = hashlib.sha256(lemma.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0 ** 64 < fraction


def word_index(ss, lemma):
    for k, w in enumerate(ss.words):
        if w.lower() == lemma:
            return k
    return 0


def mentions(text, lemma):
    """True if the example sentence uses the lemma (or an inflection starting with its stem)."""
    t = text.lower()
    if lemma in t:
        return True
    if " " in lemma or len(lemma) < 5:
        return False
    stem = lemma[:-2]
    i = t.find(stem)
    while i >= 0:  # stem must start a word: "running" for "run..." but not "outrunning"
        if i == 0 or not t[i - 1].isalnum():
            return True
        i = t.find(stem, i + 1)
    return False


class Facts:
    def __init__(self, lemma, senses, synsets):
        self.lemma = lemma
        first = synsets[senses[0]]
        self.display = first.words[word_index(first, lemma)]
        self.senses = []          # (pos_name, definition)
        self.pos_names = []
        self.examples = []
        self.synonyms = []
        self.antonyms = []
        self.hypernyms = []       # (kind, word) kind in {'kind', 'instance', 'way'}
        seen_ant, seen_hyp = set(), set()
        for key in senses:
            ss = synsets[key]
            pname = POS_NAME[ss.pos]
            if pname not in self.pos_names:
                self.pos_names.append(pname)
            if ss.definitions:
                d = ss.definitions[0]
                if len(ss.definitions) > 1 and len(d) + len(ss.definitions[1]) < MAX_DEF_CHARS:
                    d = d + "; " + ss.definitions[1]
                self.senses.append((pname, d))
            for ex in ss.examples:
                if mentions(ex, lemma) and ex not in self.examples:
                    self.examples.append(ex)
            wi = word_index(ss, lemma) + 1
            if not self.synonyms:
                # Synonyms come from one sense only: mixing senses gives lists like
                # "lacuna: blank, coffer" that read as nonsense. Forms that merely contain the
                # lemma ("genus Oedogonium" for "Oedogonium") teach nothing and are skipped.
                for w in ss.words:
                    wl = w.lower()
                    if lemma not in wl and wl not in lemma:
                        self.synonyms.append(w)
            for sym, fkey, off, src, dst in ss.pointers:
                target = synsets.get((fkey, off))
                if target is None:
                    continue
                if sym == "!" and src in (0, wi):
                    w = target.words[dst - 1] if 0 < dst <= len(target.words) else target.words[0]
                    if w.lower() not in seen_ant:
                        seen_ant.add(w.lower())
                        self.antonyms.append(w)
                elif sym in ("@", "@i") and key == senses[0]:
                    w = target.words[0]
                    if w.lower() not in seen_hyp:
                        seen_hyp.add(w.lower())
                        kind = "way" if ss.pos == "v" else ("instance" if sym == "@i" else "kind")
                        self.hypernyms.append((kind, w))


# ----------------------------------------------------------------------------------------------
# Conversation templates. Every generator returns (question, answer) or None.


def article(word):
    return "an" if word[:1].lower() in "aeiou" else "a"


def clean_def(d):
    d = d.strip().rstrip(".")
    if len(d) > MAX_DEF_CHARS and ";" in d:  # keep answers to one or two sentences
        d = d[:d.index(";")].rstrip(".")
    return d


def q_define(f, rng, follow_up=False):
    if not f.senses:
        return None
    x = f.display
    pname, d = f.senses[0]
    d = clean_def(d)
    if follow_up:
        q = rng.choice(("And what does {x} mean?", "What about {x}?", "What does {x} mean?",
                        "Define {x}, please."))
    else:
        q = rng.choice(("What does {x} mean?", "Define {x}.", "What is the meaning of the word {x}?",
                        "What does the word \"{x}\" mean?", "Can you define {x}?",
                        "What's the definition of {x}?", "Explain the word {x}.",
                        "What is {x}?", "Meaning of {x}?", "define {x}"))
    a = rng.choice(("{X} ({p}) means {d}.", "{X} is {art} {p} meaning {d}.",
                    "As {art} {p}, {x} means {d}.", "{X} ({p}): {d}."))
    a = a.format(X=x[:1].upper() + x[1:], x=x, p=pname, art=article(pname), d=d)
    if len(f.senses) > 1 and rng.random() < 0.35:
        p2, d2 = f.senses[1]
        if len(d) + len(d2) < 200:  # the tiny model gets short answers
            if p2 == pname:
                a += " It can also mean {}.".format(clean_def(d2))
            else:
                a += " As {} {}, it means {}.".format(article(p2), p2, clean_def(d2))
    return q.format(x=x), a


def q_example(f, rng, follow_up=False):
    if not f.examples:
        return None
    x = f.display
    ex = rng.choice(f.examples)
    ex = ex[:1].upper() + ex[1:]
    if ex[-1:] not in ".!?":
        ex += "."
    if follow_up:
        q = rng.choice(("Use it in a sentence.", "Can you give me an example?",
                        "How would I use it in a sentence?", "Example, please."))
    else:
        q = rng.choice(("Use {x} in a sentence.", "Give me an example sentence with {x}.",
                        "How do you use the word {x}?", "Can you use \"{x}\" in a sentence?",
                        "Show me {x} in a sentence."))
    a = rng.choice(("Here is an example: \"{e}\"", "For example: \"{e}\"", "\"{e}\"",
                    "Sure: \"{e}\""))
    return q.format(x=x), a.format(e=ex)


def q_synonym(f, rng, follow_up=False):
    if not f.synonyms:
        return None
    x = f.display
    if follow_up:
        q = rng.choice(("Give me a synonym for it.", "Is there another word for it?",
                        "What is a synonym?"))
    else:
        q = rng.choice(("Give me a synonym for {x}.", "What is another word for {x}?",
                        "What's a synonym of {x}?", "Synonym for {x}?",
                        "Which word means the same as {x}?"))
    syn = f.synonyms[:3]
    if len(syn) == 1 or rng.random() < 0.5:
        a = rng.choice(("A synonym for {x} is {y}.", "You can say {y}.",
                        "Another word for {x} is {y}.")).format(x=x, y=syn[0])
    else:
        lst = ", ".join(syn[:-1]) + " and " + syn[-1]
        a = "Synonyms for {x} include {l}.".format(x=x, l=lst)
    return q.format(x=x), a


def q_antonym(f, rng, follow_up=False):
    if not f.antonyms:
        return None
    x = f.display
    if follow_up:
        q = rng.choice(("And the opposite?", "What is its opposite?", "What's the antonym?"))
    else:
        q = rng.choice(("What is the opposite of {x}?", "Give me an antonym for {x}.",
                        "What's the antonym of {x}?", "Opposite of {x}?"))
    a = rng.choice(("The opposite of {x} is {y}.", "An antonym of {x} is {y}.",
                    "{Y} is the opposite of {x}."))
    y = f.antonyms[0]
    return q.format(x=x), a.format(x=x, y=y, Y=y[:1].upper() + y[1:])


def q_pos(f, rng, follow_up=False):
    x = f.display
    names = f.pos_names
    other = [p for p in ("noun", "verb", "adjective", "adverb") if p != names[0]]
    if follow_up:
        q = "What part of speech is it?"
    else:
        b = rng.choice(other)
        pair = (names[0], b) if rng.random() < 0.5 else (b, names[0])
        q = rng.choice(("Is {x} {p} or {q}?", "What part of speech is {x}?", "Is {x} {p} or {q}?"))
        q = q.format(x=x, p=article(pair[0]) + " " + pair[0], q=article(pair[1]) + " " + pair[1])
    X = x[:1].upper() + x[1:]
    if len(names) == 1:
        a = "{X} is {art} {p}.".format(X=X, art=article(names[0]), p=names[0])
    else:
        lst = ", ".join(article(p) + " " + p for p in names[:-1])
        a = "{X} can be {l} or {art} {p}.".format(X=X, l=lst, art=article(names[-1]), p=names[-1])
    return q, a


def q_hypernym(f, rng, follow_up=False):
    if not f.hypernyms:
        return None
    x = f.display
    kind, y = f.hypernyms[0]
    X = x[:1].upper() + x[1:]
    if kind == "way":
        q = "What kind of action is {x}?" if not follow_up else "What kind of action is it?"
        a = rng.choice(("To {x} is a way to {y}.", "To {x} is one way to {y}."))
    elif kind == "instance":
        q = rng.choice(("What is {x}?", "What kind of thing is {x}?")) if not follow_up \
            else "What kind of thing is it?"
        a = "{X} is an instance of {art} {y}."
    else:
        q = rng.choice(("What kind of thing is {x}?", "What category does {x} belong to?",
                        "{X} is a type of what?")) if not follow_up else "What kind of thing is it?"
        a = rng.choice(("{X} is a kind of {y}.", "{X} is a type of {y}."))
    return q.format(x=x, X=X), a.format(x=x, X=X, y=y, art=article(y))


FOLLOW_UPS = (q_example, q_synonym, q_antonym, q_pos, q_hypernym)
STARTERS = ((q_define, 6), (q_example, 2), (q_synonym, 2), (q_antonym, 2), (q_pos, 1), (q_hypernym, 2))


def conversation_for(f, rng, starter, facts_by_lemma, valid_set, is_valid):
    """One conversation about f. Returns (messages, kind)."""
    turns = []
    first = starter(f, rng)
    if first is None:
        return None
    turns.append(first)
    if rng.random() < MULTI_TURN_FRACTION:
        n_more = rng.choice((1, 1, 2))
        pool = [g for g in FOLLOW_UPS if g is not starter]
        rng.shuffle(pool)
        for g in pool:
            if len(turns) > n_more:
                break
            if rng.random() < 0.3:
                # A related word: its synonym or hypernym, defined in the same conversation,
                # never a word from the other split (keeps valid words out of train subjects).
                rel = [w for w in f.synonyms + [h for _, h in f.hypernyms]
                       if w.lower() in facts_by_lemma and (w.lower() in valid_set) == is_valid]
                if rel:
                    t = q_define(facts_by_lemma[rng.choice(rel).lower()], rng, follow_up=True)
                    if t:
                        # The subject has changed, so "it" would now be ambiguous: stop here.
                        turns.append(t)
                        break
            t = g(f, rng, follow_up=True)
            if t:
                turns.append(t)
    messages = []
    if rng.random() < SYSTEM_PROMPT_FRACTION:
        messages.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    for q, a in turns:
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": a})
    return messages, (starter.__name__[2:] + ("+multi" if len(turns) > 1 else ""))


def pick_starter(f, rng, exclude=None):
    weights = []
    for g, w in STARTERS:
        ok = (g is not exclude and
              (g is not q_define or f.senses) and (g is not q_example or f.examples) and
              (g is not q_synonym or f.synonyms) and (g is not q_antonym or f.antonyms) and
              (g is not q_hypernym or f.hypernyms))
        weights.append(w if ok else 0)
    if sum(weights) == 0:
        return None
    return rng.choices([g for g, _ in STARTERS], weights=weights)[0]


# ----------------------------------------------------------------------------------------------
# Output


def write_atomic(path, data):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def build(args):
    synsets, index, license_header = load_wordnet(args.wordnet_dir)
    lemmas = sorted(index)
    valid_set = {l for l in lemmas if in_valid(l, args.valid_fraction)}

    if args.max_words is not None:
        # Keep the by-word split: sample from each side in proportion, at least one valid word.
        n_valid = 0 if args.valid_fraction <= 0 else max(1, round(args.max_words * args.valid_fraction))
        sel = random.Random(args.seed)
        v = sorted(valid_set)
        t = [l for l in lemmas if l not in valid_set]
        chosen = sel.sample(v, min(n_valid, len(v))) + \
            sel.sample(t, min(max(0, args.max_words - n_valid), len(t)))
        lemmas = sorted(chosen)

    facts_by_lemma = {l: Facts(l, index[l], synsets) for l in lemmas}
    splits = {"train": [], "valid": []}
    kinds = {"train": {}, "valid": {}}
    for lemma in lemmas:
        f = facts_by_lemma[lemma]
        split = "valid" if lemma in valid_set else "train"
        rng = random.Random("{}:{}".format(args.seed, lemma))
        n = 1 + (rng.random() < EXTRA_CONVERSATION_FRACTION)
        used = None
        for _ in range(n):
            starter = pick_starter(f, rng, exclude=used)
            if starter is None:
                break
            used = starter
            c = conversation_for(f, rng, starter, facts_by_lemma, valid_set, split == "valid")
            if c is None:
                continue
            messages, kind = c
            splits[split].append((lemma, messages))
            kinds[split][kind] = kinds[split].get(kind, 0) + 1

    shuffle = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    stats = {"source": "WordNet 3.0 (Debian wordnet-base)", "seed": args.seed,
             "valid_fraction": args.valid_fraction, "max_words": args.max_words,
             "lemmas_total": len(index), "splits": {}}
    for split, convs in splits.items():
        shuffle.shuffle(convs)
        lines = [json.dumps({"messages": m}, ensure_ascii=False) for _, m in convs]
        data = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
        write_atomic(os.path.join(args.out, split + ".jsonl"), data)
        n_msg = sum(len(m) for _, m in convs)
        chars = sum(len(x["content"]) for _, m in convs for x in m)
        stats["splits"][split] = {
            "words": len({l for l, _ in convs}),
            "conversations": len(convs),
            "multi_turn_conversations": sum(1 for _, m in convs
                                            if sum(x["role"] == "user" for x in m) > 1),
            "messages": n_msg,
            "content_characters": chars,
            "file_bytes": len(data),
            "by_kind": dict(sorted(kinds[split].items())),
        }
    # The tokenizer sees training text only, so validation words stay unseen there too.
    tok = "\n".join(x["content"] for _, m in splits["train"] for x in m) + "\n"
    write_atomic(os.path.join(args.out, "tokenizer_text.txt"), tok.encode("utf-8"))
    write_atomic(os.path.join(args.out, "stats.json"),
                 (json.dumps(stats, indent=2) + "\n").encode("utf-8"))
    write_atomic(os.path.join(args.out, "WORDNET_LICENSE.txt"),
                 license_text(args.wordnet_dir, license_header).encode("utf-8"))
    return stats


def license_text(wn_dir, header_lines):
    head = ("This corpus (and any model trained on it) is derived from WordNet 3.0,\n"
            "as shipped by the Debian package wordnet-base. WordNet's licence follows.\n\n")
    copyright_path = "/usr/share/doc/wordnet-base/copyright"
    body = None
    if os.path.isfile(copyright_path):
        with open(copyright_path, "r", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        m = re.search(r"^License: WordNet3\.0\n((?:[ \t].*\n?)+)", text, re.M)
        if m:
            body = "\n".join("" if l.strip() == "." else l[1:] for l in m.group(1).splitlines())
    if body is None:
        if not header_lines:
            raise CorpusError(f"{wn_dir}/data.noun: WordNet licence header not found")
        body = "\n".join(header_lines)
    return head + body.rstrip() + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wordnet-dir", default="/usr/share/wordnet")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-words", type=int, default=None,
                    help="use only N lemmas (for small test corpora); default: all")
    ap.add_argument("--valid-fraction", type=float, default=0.03)
    args = ap.parse_args(argv)
    if not 0.0 <= args.valid_fraction < 1.0:
        ap.error("--valid-fraction must be in [0, 1)")
    if args.max_words is not None and args.max_words < 1:
        ap.error("--max-words must be >= 1")
    if not os.path.isdir(args.wordnet_dir):
        print(f"error: {args.wordnet_dir}: WordNet directory not found; install wordnet-base: "
              f"apt-get install wordnet-base", file=sys.stderr)
        return 1
    try:
        stats = build(args)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, s in stats["splits"].items():
        print(f"{split}: {s['words']} words, {s['conversations']} conversations, "
              f"{s['file_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
