"""The one prompt builder, the one answer extractor and the format check, shared by SFT, GRPO
(reward) and eval.

The extractor is the GRPO reward: any output it credits with a letter that the output did not
commit to alone is a hole a policy finds within a few hundred steps (hedging pays when the grader
reads "the first letter" of a list). It is strict on purpose (see ../shared/PITFALLS.md,
"Evaluation"): it never guesses, and it returns None - scored as wrong - whenever the output
commits to no answer or to several.

Extraction policy (extract_answer):
 1. Reasoning is not read. Qwen3 <think>...</think> blocks are dropped, and so is everything up to
    a lone </think> (the chat template may have opened <think> in the prompt); an unclosed <think>
    means the output was cut inside its reasoning: nothing after it counts. Decoder leftovers
    such as <|im_end|> are ignored; full-width forms (Ａ, （Ｂ）, ＜answer＞) count as ASCII.
 2. Tags decide. If the output has a non-empty <answer> tag (any case), the answer is what the tags
    hold; prose BEFORE the first tag is reasoning and is not read. An unclosed last tag (cut off,
    or a sampler stopped before "</answer>") holds everything to the end of the output.
 3. A tag holds exactly one choice: a letter (B, (B), B., b, **B**, \\boxed{B}, "Answer: B",
    "Option (B)"), the whole text of one option, or a letter with its own option's text ("B. Asthma",
    "B) Asthma", "Asthma (B)"; a cut-off start of that text counts). Anything else in the tag is no
    answer: "A or D", "A/D", "AD", "A. Asthma or D. Pneumonia", an option list (on one line or one
    per line, closed or cut off after an unclosed tag), a letter with another option's text or with
    more than its own text, garbled or nested tags.
 4. Several non-empty tags must all hold the same choice: two agreeing tags count once, two that
    disagree are no answer (the last one does not win), a tag that holds no choice spoils the rest.
    Empty tags (an echo of the instruction) are ignored.
 5. From the first tag on, prose is part of the answer: every answer phrase there (rule 6) must
    name the tags' choice, and what follows a tag on its line, or restates an option on the next
    line, must not name another option (rule 7). "<answer>B</answer> Explanation: ..." stands.
 6. Without a tag, answer phrases decide: "The answer is (B)", "Answer: B", "The correct option is
    B", "Option B is correct", \\boxed{B}, "答案：B", "答案是B", "故选B", "The answer is <the whole
    text of one option>" (followed by punctuation or the line end; it beats reading an article as a
    letter: "The answer is A white woman."), and a last line holding only a letter. All must name
    the same choice: two phrases, or a phrase and a final letter line, that disagree are no answer.
    Letters in prose must be upper case or bracketed ("the answer is a drug" is English, not
    option A). Option texts compare case-free unless two options differ only in case ("Bb Bb").
 7. A committed choice (a tag or a phrase) is no answer when the rest of its line names another
    option: a bracketed letter "(D)"; a letter, letter set or option text after or / and / nor / vs /
    , / ; / / / & / 或 / 和 / 、, also with hedge words between ("or perhaps D", "or option D");
    another letter right after the choice ("B D", "B. Asthma D"); "D. <D's text>"; or when the next
    non-empty line restates another option ("D", "D. Pneumonia", "Pneumonia (D)", "Pneumonia").
    A letter followed by a lower-case word is English, not an option ("and A patient", "or E. coli",
    "B cells", "I think"), unless the word makes it one ("D is also possible").
 8. Multi-answer items (multi=True) take a letter set - "ACE", "A, C, E", "A and C", "答案：A、C、E" -
    returned sorted ("ACE") and scored by exact set match; letters only, no option texts. A second
    set ("ACE或ABE", a second tag, "故选ABE" after the tag) is a second answer. A single-answer item
    never takes more than one letter.
 9. A letter must be one of the item's options (E is no answer for a four-option item).

Format policy (format_error / format_ok, the other half of the paper's reward): a well-formed
completion is, for every model we train (our SFT data is written this way):
    [<think>] reasoning </think> <answer>X</answer>
 - exactly one </think>; at most one <think>, and only at the very start (a Qwen3 chat template
   may open <think> in the prompt, so the completion may begin inside the reasoning); the
   reasoning is not empty;
 - exactly one <answer> and one </answer>, after </think>, with only whitespace between
   </think> and <answer>;
 - X is one valid choice of the item (rule 3; a letter set for multi-answer items);
 - after </answer> only whitespace or decoder end tokens (<|im_end|>, <|endoftext|>, </s>).
A truncated completion (cut inside the reasoning or inside the tag) is not well formed. Tags are
matched case-insensitively, as by the extractor.
"""
import functools
import re
import unicodedata

# ----------------------------------------------------------------------------- prompt


def format_question(rec):
    """Question and lettered options, as the user sees them."""
    opts = "\n".join(f"{k}. {v}" for k, v in rec["options"].items())
    return f"{rec['question'].strip()}\n\n{opts}"


def instruction(rec, direct=False):
    letters = list(rec["options"])
    choices = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    if direct:  # the paper's non-inference baseline: the answer without reasoning
        return f"Without reasoning, give the single best option ({choices}) inside <answer></answer>."
    if rec["meta"].get("multi_answer"):
        return ("This question has more than one correct option. Think through the problem step by step, "
                f"then give ALL the correct letters (from {choices}) together inside <answer></answer>, "
                "letters only, with nothing else in the tags.")
    return ("Think through the problem step by step, then give the letter of the single best option "
            f"({choices}) inside <answer></answer>, with nothing else in the tags.")


def build_prompt(rec, system=None, direct=False):
    """Chat messages for one record: [{"role": "system"?}, {"role": "user"}]. model.py renders the
    chat template; the reasoning and the <answer> tag are the assistant's to write (direct: the tag only)."""
    msgs = [{"role": "system", "content": system}] if system else []
    msgs.append({"role": "user", "content": f"{format_question(rec)}\n\n{instruction(rec, direct)}"})
    return msgs


# ----------------------------------------------------------------------------- extraction

# The tags, matched the same way by the extractor and the format check.
_THINK, _END_THINK = re.compile(r"<think>", re.I), re.compile(r"</think>", re.I)
_ANSWER, _END_ANSWER = re.compile(r"<\s*answer\s*>", re.I), re.compile(r"<\s*/\s*answer\s*>", re.I)
_TAG = re.compile(rf"{_ANSWER.pattern}(.*?)(?:{_END_ANSWER.pattern}|\Z)", re.S | re.I)  # unclosed: to the end
_SPECIAL = re.compile(r"<\|[^<>|\s]*\|>|</s>")  # <|im_end|>, <|endoftext|> left in by a decoder
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
# Words that may sit in front of the choice inside a tag: "Answer: B", "Option (C)", "答案：D".
_PREFIX = re.compile(r"^(?:(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)s?"
                     r"(?:\s+is)?|答案(?:是|为)?|选项|选)\s*[:：]?\s*", re.I)
# Words and marks that join two options into a list: "A or D", "A, D", "A/D", "A或D", "A、D".
_CONN = r"(?:\b(?i:and/or|or|and|nor|versus|vs)\b\.?|[/,;&、，；]|或者?|以及|和|及)"
# Words between such a joint and the next option that keep it a list: "or perhaps (D)", "or option D".
_FILLER_WORD = re.compile(r"\s*(?:perhaps|maybe|possibly|probably|potentially|even|also|alternatively|rather|"
                          r"else|options?|choices?|选项|也可能|可能)\b", re.I)
_FILLER = rf"(?:{_FILLER_WORD.pattern})*"
# A letter in prose: upper case or bracketed; a list of them ("A, C and E") is captured whole and
# is an answer only for a multi-answer item. A listed letter followed by a lower-case word is
# English ("B, I think", "and A patient", "or E. coli", "and B cells") unless that word makes it an
# option again ("D is also possible"; but "I could" stays English).
_ENGLISH = (r"(?!\.?\s+(?!(?:is|are|was|also|too|could|might|may|would|should|can|seems?)\b)[a-z])"
            r"(?!(?<=I)\s+[a-z])")  # "I could be wrong"
_ONE = r"(?:[(（]\s*[A-Za-z]\s*[)）]|\*{0,2}[A-Z]\*{0,2}(?![A-Za-z0-9_-]))"
_MORE = rf"(?:[(（]\s*[A-Za-z]\s*[)）]|\*{{0,2}}[A-Z]\*{{0,2}}(?![A-Za-z0-9_-]){_ENGLISH})"
_LIST = rf"({_ONE}(?:(?:\s*{_CONN})+\s*{_MORE})*)"
_RUN = r"\**[(（]?([A-Z]+(?:\s*[、，,和及]\s*[A-Z]+)*)(?![A-Za-z])"  # Chinese forms: "ACE", "A、C、E", "(B)"
_PHRASES = [
    re.compile(r"\b(?i:answers?|option|choice)\**(?:\s*(?i:is|are|would be|should be|will be)\s*[:：]?"
               r"|\s*[:：])[\s*_]*(?i:option\s*|choice\s*)?" + _LIST),
    re.compile(r"\b(?i:option|choice)\s*" + _LIST + r"\s+(?i:is\s+(?:the\s+)?(?:correct|right|best))"),
    re.compile(r"(?:答案|选项)\s*(?:是|为|应为|应该是)?\s*[:：]?\s*" + _RUN),
    re.compile(r"故选\s*" + _RUN),
]
_TEXT_ANSWER = re.compile(r"\b(?i:answer)\**\s*(?:is|:)[\s*:]*")
_FINAL_LINE = re.compile(r"^\W{0,3}\(?([A-Z])\)?[.)]?\W{0,3}$")


def strip_think(text):
    """Drop Qwen3 reasoning: <think>...</think> blocks, or all up to a lone </think> (the chat
    template may open the tag in the prompt). An unclosed <think> means the output was cut inside
    its reasoning: nothing is left."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S | re.I)
    text = _END_THINK.split(text)[-1]
    m = _THINK.search(text)
    return text[:m.start()] if m else text


def _norm(s):
    """NFKC folds full-width letters and brackets (Ａ, （Ｂ）) to ASCII; whitespace runs become one space."""
    s = unicodedata.normalize("NFKC", s)
    return re.sub(r"\s+", " ", s).strip()


def _key(s, case=False):
    """Option text compared case-free, without trailing punctuation, quotes or markdown."""
    s = _norm(s) if case else _norm(s).lower()
    return re.sub(r"[\s.。,，;；:：!！*\"'`“”‘’]+$", "", s).strip(" *\"'`“”‘’")


def _option_match(text, options):
    """Letter whose option text equals `text` (normalized), None if none or several. Options that
    differ only in case ("Bb Bb", "bb Bb") are told apart by case."""
    hits = [l for l, o in options.items() if _key(o) == _key(text)]
    if len(hits) > 1:
        hits = [l for l in hits if _key(options[l], case=True) == _key(text, case=True)]
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


def _is_own_text(text, letter, options):
    """`text` is the option's own text, or a cut-off start of it, and not another option's text."""
    k, own = _key(text), _key(options[letter])
    if not k or re.fullmatch(r"\(?[a-z]\)?", k) and k.strip("()") != own:  # "A (D)": two letters
        return False
    return _option_match(text, options) in (None, letter) and own.startswith(k)


# A letter written with option text: "(B) Asthma", "B. Asthma", "B) / B: / B - Asthma", "B (Asthma)",
# "Asthma (B)". The text must be the letter's own (rule 3).
_WITH_TEXT = [re.compile(p, re.S) for p in (
    r"\((?P<l>[A-Za-z])\)\s*(?P<t>.+)",
    r"(?P<l>[A-Za-z])\s*(?:[.:)：、]|\s[-–—])\s*(?P<t>.+)",
    r"(?P<l>[A-Za-z])\s*\((?P<t>.+)\)",
    r"(?P<t>.+?)\s*\((?P<l>[A-Za-z])\)")]


def parse_choice(content, options, multi=False):
    """The one choice written inside an answer tag (or a \\boxed{}, or after an answer phrase), or
    None. Accepts B, (B), B., b, Ｂ, "Answer: B", the exact text of one option, and a letter with its
    own option's text; for multi-answer items a letter set ("ACE", "A, C, E", "A and C")."""
    s = _unwrap(_norm(content))
    if not s:
        return None
    hit = _single(s, options)
    if hit is None:
        s = _unwrap(_PREFIX.sub("", s))  # "Answer: B", "The answer is (C)", "选项D"
        hit = _single(s, options) if s else False
    if hit is not None:
        return hit or None
    # several letters: "A, C, E", "ACE", "A and C" - an answer only for multi-answer items
    letters = re.sub(r"\s+(?:and|&)\s+", ",", s, flags=re.I)
    if multi and re.fullmatch(r"\(?[A-Za-z]\)?(?:\s*[,、，;\s]\s*\(?[A-Za-z]\)?)+|[A-Z]{2,}", letters):
        found = sorted(set(re.findall(r"[A-Z]", letters.upper())))
        return "".join(found) if all(l in options for l in found) else None
    for pat in _WITH_TEXT:
        m = pat.fullmatch(s)
        if m:
            l = m["l"].upper()
            return l if l in options and _is_own_text(m["t"], l, options) else None
    return None


def _restates(line, options, skip):
    """The line restates an option not in `skip` - "B", "(B)", "B. Bronchitis", "- **B)** Bronch",
    "Bronchitis (B)", "Bronchitis" - and that option's letter, else None."""
    s = re.sub(r"^[-•>#\s]*(?:(?i:options?|choices?|or|and)\s+)?", "", _norm(line).replace("*", ""))
    m = re.fullmatch(r"[(（]?([a-z])[)）]?[.:：、)]?", s)  # a lone lower-case letter: "d."
    s = s.upper() if m else s
    m = re.fullmatch(r"[(（]?([A-Z])[)）]?(?:\s*[.:：、)]\s*|\s+)?(.*)", s)
    if m and m[1] in options and m[1] not in skip and _key(options[m[1]]).startswith(_key(m[2])):
        return m[1]
    m = re.fullmatch(r"(.+?)\s*[(（]([A-Z])[)）]\W*", s)
    if m and m[2] in options and m[2] not in skip and _key(m[1]) == _key(options[m[2]]):
        return m[2]
    hit = _option_match(s, options)
    return hit if hit and hit not in skip else None


_JOINT = re.compile(_CONN)
_GAP = re.compile(rf"(?:[^\w]|_|{_CONN}|(?i:{_FILLER_WORD.pattern}|\bthen\b))*")
# a letter standing alone (not "e.g.", "A 45-year-old", "D-dimer"), or a letter set for multi-answer items
_LETTER_TOKEN = re.compile(r"(?:[A-Z](?![A-Za-z0-9_-])|[a-z](?![A-Za-z0-9_-])(?!\.\w))(?!\.?\s+[a-z0-9])")
_LETTER_RUN = re.compile(r"[A-Z]+(?![A-Za-z0-9_-])(?!\.?\s+[a-z0-9])")
_MARKED = re.compile(r"(?<![A-Za-z0-9])([A-Z])\s*[.)）:：]\s*")
_NEXT_LINE = re.compile(r"\s*([^\n]*)")  # from a line end: the next non-empty line
_LEAD = re.compile(r"[\s.:：)）*\-–—]*")
_ENDS = re.compile(r"\s*(?:[.,;:!?。，；！？(（]|\n|\Z)")


@functools.lru_cache(maxsize=8192)
def _text_re(option):
    """An option's text as a regex that allows any whitespace between its words (None if empty)."""
    words = _norm(option).split()
    return re.compile(r"\s+".join(map(re.escape, words)), re.I) if words else None


def _text_at_pos(s, at, option):
    """The option's whole text is written at s[at:] (case-free, any spacing, not inside a word)."""
    m = _text_re(option) and _text_re(option).match(s, at)
    last, after = s[m.end() - 1:m.end()] if m else "", s[m.end():m.end() + 1] if m else ""
    return bool(m) and not (last.isascii() and last.isalnum() and after.isalnum())  # Chinese has no spaces


def _names_other(clause, choice, options):
    """The rest of a committed choice's line names another option (rule 7)."""
    s = _norm(clause)
    others = [l for l in options if l not in choice]

    def other_letters(letters):
        return set(letters.upper()) <= set(options) and set(letters.upper()) != set(choice)

    # right after the choice, with only marks, joints or hedge words between: "B D", "B.D.", "B|D",
    # "B (or) d", "B - Pneumonia", "B Option D", "B. Bronchitis (C) Croup"
    at = _GAP.match(s).end()
    m = (_LETTER_RUN if len(choice) > 1 else _LETTER_TOKEN).match(s, at)
    if m and other_letters(m[0]) or any(_text_at_pos(s, at, options[l]) for l in others):
        return True
    # anywhere on the line: a bracketed letter, or a letter (set) or option text after a joint
    if any(m[1].upper() in others for m in re.finditer(r"[(（\[]\s*([A-Za-z])\s*[)）\]]", s)):
        return True
    run = r"[A-Z]+" if len(choice) > 1 else r"[A-Z]"
    if any(other_letters(m[1]) for m in
           re.finditer(rf"{_CONN}(?i:{_FILLER})[\s*_]*({run})\**(?![A-Za-z0-9_-]){_ENGLISH}", s)):
        return True
    for m in _JOINT.finditer(s):  # "or pneumonia", "or perhaps maybe"
        at = m.end()
        while True:
            at += len(s[at:]) - len(s[at:].lstrip())
            if any(_text_at_pos(s, at, options[l]) for l in others):
                return True
            w = _FILLER_WORD.match(s, at)
            if not w:
                break
            at = w.end()
    for m in _MARKED.finditer(s):  # "D. Pneumonia", or a cut-off start of it
        rest, text = _key(s[m.end():]), m[1] in others and _key(options[m[1]])
        if text and rest and (rest.startswith(text) or text.startswith(rest)):
            return True
    return False


def _committed(text, end, choice, options):
    """`choice` (written up to text[end]), or None when the rest of its line or the next line names
    another option."""
    if choice is None:
        return None
    own = _text_re(options[choice]) if len(choice) == 1 else None
    m = own and own.match(text, _LEAD.match(text, end).end())
    end = m.end() if m else end  # its own text may follow the letter, even across lines: "(B) Asthma"
    m = len(choice) == 1 and re.compile(rf"\s*[(（]\s*{choice}\s*[)）]").match(text, end)
    end = m.end() if m else end  # and its own letter the text: "Asthma (A)"
    nl = text.find("\n", end)
    nl = len(text) if nl < 0 else nl
    nxt = _NEXT_LINE.match(text, nl)
    nxt = nxt[1] if nxt else ""
    if _names_other(_TAG.sub(" ", text[end:nl]), choice, options) or _restates(nxt, options, choice):
        return None
    return choice


def _text_at(text, pos, options):
    """(letter, end) of the option whose whole text is written at text[pos:], ending the sentence
    or followed by punctuation ("The answer is 0.08.", "... is yes, because"; not "... is no longer");
    (None, pos) if none, or if several options fit equally."""
    ends = {}
    for l, o in options.items():
        m = _text_re(o) and _text_re(o).match(text, pos)
        if m and _ENDS.match(text, m.end()):
            ends.setdefault(m.end(), []).append(l)
    if not ends:
        return None, pos
    end = max(ends)
    hits = ends[end]
    if len(hits) > 1:  # options that differ only in case: "Bb Bb", "bb Bb"
        hits = [l for l in hits if _key(text[pos:end], case=True) == _key(options[l], case=True)]
    return (hits[0], end) if len(hits) == 1 else (None, pos)


def _phrases(text, options, multi):
    """Every answer phrase in prose (rule 6), each its choice or None (unparseable or hedged)."""
    found = []
    for m in _BOXED.finditer(text):
        found.append(_committed(text, m.end(), parse_choice(m[1], options, multi), options))
    for pat in _PHRASES:
        for m in pat.finditer(text):
            hit, end = _text_at(text, m.start(1), options)
            if hit and end - m.start(1) > 1:
                continue  # "The answer is A white woman.": an option's text, read below, not the letter A
            found.append(_committed(text, m.end(1), parse_choice(m[1], options, multi), options))
    for m in _TEXT_ANSWER.finditer(text):  # "The answer is yes." - the text of one option
        hit, end = _text_at(text, m.end(), options)
        if hit and not re.fullmatch(r"[A-Za-z]", text[m.end():end]):  # a lone letter is read as a letter
            found.append(_committed(text, end, hit, options))
    lines = [l for l in text.splitlines() if l.strip()]
    m = _FINAL_LINE.match(lines[-1].strip()) if lines else None
    if m:  # a last line holding only a letter; an option list ending there is no answer
        prev = _restates(lines[-2], options, m[1]) if len(lines) > 1 else None
        found.append(None if prev else parse_choice(m[1], options, multi))
    return found


def _agree(found):
    return found[0] if found and None not in found and len(set(found)) == 1 else None


def extract_answer(output, options, multi=False):
    """The model's choice: a letter ("B"), a sorted letter string for multi-answer items ("ACE"),
    or None when the output commits to no answer or to several (the policy is the module doc)."""
    if not isinstance(output, str):
        return None
    text = _SPECIAL.sub(" ", strip_think(unicodedata.normalize("NFKC", output)))
    tags = list(_TAG.finditer(text))
    full = [m for m in tags if m[1].strip()]
    if not full:
        return _agree(_phrases(_TAG.sub("\n", text), options, multi))
    found = [_committed(text, m.end(), parse_choice(m[1], options, multi), options) for m in full]
    found += _phrases(_TAG.sub("\n", text[tags[0].start():]), options, multi)
    return _agree(found)


def score(rec, output):
    """(extracted, correct) for one output on one record; a failed extraction is wrong."""
    multi = bool(rec["meta"].get("multi_answer"))
    got = extract_answer(output, rec["options"], multi)
    if got is None:
        return None, False
    return got, set(got) == set(rec["answer"])


# ----------------------------------------------------------------------------- format (the reward's other half)

_EOS = re.compile(r"(?:<\|[^<>|\s]*\|>|</s>)\Z")


def format_error(output, options, multi=False):
    """Why `output` is not a well-formed completion (the module doc's format policy), or None when
    it is: [<think>] reasoning </think> <answer>X</answer>, X one valid choice of the item."""
    if not isinstance(output, str):
        return "not text"
    text = output.rstrip()
    while m := _EOS.search(text):  # trailing decoder end tokens
        text = text[:m.start()].rstrip()
    think, end_think = list(_THINK.finditer(text)), list(_END_THINK.finditer(text))
    ans, end_ans = list(_ANSWER.finditer(text)), list(_END_ANSWER.finditer(text))
    if not end_think:
        return "no </think>"  # no reasoning block, or cut off inside it
    if len(think) > 1 or len(end_think) > 1:
        return "several think blocks"
    if think and (text[:think[0].start()].strip() or think[0].start() > end_think[0].start()):
        return "text before <think>"
    if not text[think[0].end() if think else 0:end_think[0].start()].strip():
        return "empty reasoning"
    if not ans:
        return "no answer tag"
    if len(ans) > 1 or len(end_ans) > 1:
        return "several answer tags"
    if ans[0].start() < end_think[0].end():
        return "answer tag inside the reasoning"
    if not end_ans or end_ans[0].start() < ans[0].end():
        return "unclosed answer tag"  # cut off, or tags out of order
    if text[end_think[0].end():ans[0].start()].strip():
        return "text between </think> and <answer>"
    if text[end_ans[0].end():].strip():
        return "text after </answer>"
    if parse_choice(text[ans[0].end():end_ans[0].start()], options, multi) is None:
        return "no valid choice in the answer tag"
    if extract_answer(output, options, multi) is None:  # the reward's two halves must not disagree
        return "no single answer"
    return None


def format_ok(output, options, multi=False):
    """True for a well-formed completion: the format half of the GRPO reward."""
    return format_error(output, options, multi) is None
