"""The one prompt builder and the one answer extractor, shared by SFT, GRPO (reward) and eval.

The model is asked to reason, then put its choice inside <answer></answer>. The extractor is strict
on purpose (see PITFALLS.md, "Evaluation"): it never guesses. It returns None - an extraction
failure, scored as wrong - when nothing parses, when several different answers are given, when a
letter is not among the item's options, or when a letter comes with another option's text.

Order of evidence:
  1. Qwen3's <think>...</think> is dropped: only what follows the reasoning counts.
  2. The LAST non-empty <answer> tag decides (a model that corrects itself ends with the fix); an
     unclosed final tag counts too (a sampler stopped on "</answer>"). If that tag does not parse,
     the answer is None: text outside it is not consulted.
  3. Without any tag: patterns such as "The answer is (B)", "Answer: B", \\boxed{B}, "答案：B", or a
     final line holding just the letter. They must all agree.
Letters are returned upper case; multi-answer items give a sorted string such as "ACE", scored
by exact set match.
"""
import re
import unicodedata

# ----------------------------------------------------------------------------- prompt


def format_question(rec):
    """Question and lettered options, as the user sees them."""
    opts = "\n".join(f"{k}. {v}" for k, v in rec["options"].items())
    return f"{rec['question'].strip()}\n\n{opts}"


def instruction(rec):
    letters = list(rec["options"])
    choices = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    if rec["meta"].get("multi_answer"):
        return ("This question has more than one correct option. Think through the problem step by step, "
                f"then give ALL the correct letters (from {choices}) together inside <answer></answer>, "
                "letters only, with nothing else in the tags.")
    return ("Think through the problem step by step, then give the letter of the single best option "
            f"({choices}) inside <answer></answer>, with nothing else in the tags.")


def build_prompt(rec, system=None):
    """Chat messages for one record: [{"role": "system"?}, {"role": "user"}]. model.py renders the
    chat template; the reasoning and the <answer> tag are the assistant's to write."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": f"{format_question(rec)}\n\n{instruction(rec)}"})
    return msgs


# ----------------------------------------------------------------------------- extraction

_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_OPEN_TAG = re.compile(r"<answer>(?!.*</answer>)(.*)\Z", re.S | re.I)
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
# Words that may sit in front of the choice inside a tag: "Answer: B", "Option (C)", "答案：D".
_PREFIX = re.compile(r"^(?:(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)s?"
                     r"(?:\s+is)?|答案(?:是|为)?|选项|选)\s*[:：]?\s*", re.I)
# Fallback phrases outside tags. Letters must be upper case or in brackets ("the answer is a
# drug" is English, not option A), and not the start of a list ("A or B", "A, B").
_LETTER = (r"(?:\(([A-Za-z])\)|\*{0,2}([A-Z])\*{0,2})(?![\w-])"
           r"(?!\s*(?:or|and|/|,|、)\s*\(?[A-Za-z]\b)")
_FALLBACK = [
    re.compile(r"(?i:answer|option|choice)\**(?:\s*(?i:is|would be|should be|will be)\s*[:：]?|\s*[:：])"
               r"[\s*_]*(?i:option\s*|choice\s*)?" + _LETTER),
    re.compile(r"(?i:option|choice)\s*" + _LETTER + r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))"),
    re.compile(r"(?:答案|选项)\s*(?:是|为|应为|应该是)?\s*[:：]?\s*([A-Z]+)(?![A-Za-z])"),
    re.compile(r"故选\s*([A-Z]+)(?![A-Za-z])"),
]
_TEXT_ANSWER = re.compile(r"(?i:answer)\**\s*(?:is|:)[\s*:]*([^\n.]+)")
_FINAL_LINE = re.compile(r"^\W{0,3}\(?([A-Z])\)?[.)]?\W{0,3}$")


def strip_think(text):
    """Drop Qwen3 reasoning: <think>...</think> blocks, or all up to a lone </think> (the chat
    template may open the tag in the prompt). An unclosed <think> means the output was cut inside
    its reasoning: nothing is left."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    if re.search(r"</think>", text, re.I):
        text = re.split(r"</think>", text, flags=re.I)[-1]
    m = re.search(r"<think>", text, re.I)
    return text[:m.start()] if m else text


def _norm(s):
    """NFKC folds full-width letters and brackets (Ａ, （Ｂ）) to ASCII; compare case- and space-free."""
    s = unicodedata.normalize("NFKC", s)
    return re.sub(r"\s+", " ", s).strip()


def _key(s):
    return re.sub(r"[\s.。,，;；:：!！*\"'`]+$", "", _norm(s).lower()).strip(" *\"'`")


def _option_match(text, options):
    """Letter whose option text equals `text` (normalized), None if none or several."""
    k = _key(text)
    hits = [l for l, o in options.items() if _key(o) == k]
    return hits[0] if len(hits) == 1 else None


def _unwrap(s):
    """Peel markdown, \\boxed{}, \\text{}, $...$ and quotes that models put around a choice."""
    for _ in range(4):
        prev = s
        s = s.strip().strip("*_`\"'“”").strip()
        s = re.sub(r"^\$+(.*?)\$+$", r"\1", s, flags=re.S)
        m = re.fullmatch(r"\\(?:boxed|text|textbf|mathrm)\s*\{(.*)\}", s, flags=re.S)
        if m:
            s = m.group(1)
        if s == prev:
            break
    return s


def _single(s, options):
    """A bare letter (B, (B), B., b) or the exact text of one option."""
    m = re.fullmatch(r"\(?([A-Za-z])\)?\s*[.:)：、]?", s)
    if m and m.group(1).upper() in options:
        return m.group(1).upper()
    hit = _option_match(s, options)  # also options whose text is a letter: {"C": "E", "D": "G"}
    return False if m and not hit else hit  # False: a letter, but not one of this item's


def parse_choice(content, options, multi=False):
    """The choice written inside an answer tag (or a \\boxed{}), or None. Accepts B, (B), B., b,
    Ｂ, "B) text" (the text must not be another option's), and the exact text of one option."""
    s = _unwrap(_norm(content))
    if not s:
        return None
    hit = _single(s, options)
    if hit is None:
        s = _unwrap(_PREFIX.sub("", s))  # "Answer: B", "The answer is (C)", "选项D"
        hit = _single(s, options) if s else False
    if hit is not None:
        return hit or None
    # a letter then text: "B) Metformin", "(B) Metformin", "B. Metformin", "B: Metformin",
    # "B - Metformin", "B (Metformin)"
    m = (re.fullmatch(r"(?:\(([A-Za-z])\)|([A-Za-z])\s*(?:[.:)：、]|\s[-–—]))\s*(.+)", s, flags=re.S)
         or re.fullmatch(r"()([A-Za-z])\s*\((.+)\)", s, flags=re.S))
    if m:
        l = (m.group(1) or m.group(2)).upper()
        if l not in options:
            return None
        other = _option_match(m.group(3), options)
        return l if other in (None, l) else None  # one letter with another option's text: no answer
    # several letters: "A, C, E", "ACE", "A and C" - an answer only for multi-answer items
    s = re.sub(r"\s+(?:and|&)\s+", ",", s, flags=re.I)
    if multi and re.fullmatch(r"\(?[A-Za-z]\)?(?:\s*[,、，;\s]\s*\(?[A-Za-z]\)?)+|[A-Z]{2,}", s):
        found = sorted(set(re.findall(r"[A-Z]", s.upper())))
        return "".join(found) if all(l in options for l in found) else None
    return None


def _fallback(text, options, multi):
    """Answer phrases outside tags; every one found must name the same choice."""
    found = []
    for m in _BOXED.finditer(text):
        found.append(parse_choice(m.group(1), options, multi))
    for pat in _FALLBACK:
        for m in pat.finditer(text):
            g = next(x for x in m.groups() if x)
            found.append(parse_choice(g, options, multi))
    for m in _TEXT_ANSWER.finditer(text):  # "The answer is yes." - the exact text of one option
        hit = _option_match(m.group(1), options)
        if hit:
            found.append(hit)
    if not found:
        lines = [l for l in text.strip().splitlines() if l.strip()]
        m = _FINAL_LINE.match(lines[-1].strip()) if lines else None
        if m:
            found.append(parse_choice(m.group(1), options, multi))
    if not found or None in found or len(set(found)) != 1:
        return None
    return found[0]


def extract_answer(output, options, multi=False):
    """The model's choice: a letter ("B"), a sorted letter string for multi-answer items ("ACE"),
    or None when the output gives no single valid answer."""
    if not isinstance(output, str):
        return None
    text = unicodedata.normalize("NFKC", strip_think(output))
    tags = [t for t in _TAG.findall(text) if t.strip()]
    cut = _OPEN_TAG.search(text)  # "<answer>B" with no closing tag: its first line
    if cut and cut.group(1).strip():
        tags.append(cut.group(1).strip().splitlines()[0])
    if tags:
        return parse_choice(tags[-1], options, multi)
    return _fallback(_TAG.sub(" ", text), options, multi)


def score(rec, output):
    """(extracted, correct) for one output on one record; a failed extraction is wrong."""
    multi = bool(rec["meta"].get("multi_answer"))
    got = extract_answer(output, rec["options"], multi)
    if got is None:
        return None, False
    return got, set(got) == set(rec["answer"])


# ----------------------------------------------------------------------------- format (the reward's other half)

_EOS = r"(?:\s|<\|[a-z_]+\|>|</s>)*"  # trailing whitespace or special tokens left in by the decoder
_SHAPE = re.compile(r"\s*(?:<think>)?(.*?)</think>\s*<answer>(.*?)</answer>" + _EOS + r"\Z", re.S | re.I)


def format_error(output, options, multi=False):
    """Why `output` is not a well-formed response, or None when it is. Well formed:
    [<think>] reasoning </think> <answer>X</answer>, reasoning non-empty, one think block, one answer
    tag after it, X one valid choice of the item, nothing but whitespace after </answer>."""
    if not isinstance(output, str):
        return "not text"
    for t in ("<think>", "</think>", "<answer>", "</answer>"):
        if len(re.findall(re.escape(t), output, re.I)) > 1:
            return f"several {t}"
    m = _SHAPE.fullmatch(output)
    if not m:
        return "not [<think>]...</think><answer>X</answer>"
    if not m.group(1).strip():
        return "empty reasoning"
    if parse_choice(m.group(2), options, multi) is None:
        return "answer tag holds no valid choice"
    return None


def format_ok(output, options, multi=False):
    return format_error(output, options, multi) is None
