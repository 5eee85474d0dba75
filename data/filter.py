"""Format filter: drop malformed multiple-choice items, counting every drop by reason.

check(rec) returns the first reason an item is unusable for training (or None); filter_records
applies it to a stream and fills a Counter. The checks run on records that have NOT been
schema-validated yet (a converter may emit an empty option), so each schema failure gets its own
named reason instead of one opaque error.

    python -m data.filter in.jsonl out.jsonl [--dropped dropped.jsonl]
"""
import html
import re
import unicodedata
from collections import Counter

from eval.records import ArgumentParser, check_outputs, command, int_at_least, read_jsonl, validate_record, write_jsonl

REASONS = (
    "empty_question", "bad_option_letters", "empty_option", "too_few_options", "duplicate_options",
    "answer_not_in_options", "mojibake", "replacement_char", "control_chars", "html_entity",
    "html_markup", "image_only", "missing_figure", "missing_passage", "missing_table", "option_refers_to_options",
    "question_too_short", "schema",
)

# --- encoding artifacts -------------------------------------------------------------------------

# Windows-1252 puts printable characters at 0x80-0x9f; UTF-8 decoded as cp1252 produces them.
_CP1252 = {ch: b for b in range(0x80, 0xA0) for ch in [bytes([b]).decode("cp1252", "ignore")] if ch}
_CP1252_CHARS = "".join(_CP1252)
# A UTF-8 lead byte read as Latin-1 (Â..ô) followed by one or more continuation bytes.
_MOJI_RUN = re.compile("[\u00c2-\u00f4][\u0080-\u00bf" + re.escape(_CP1252_CHARS) + "]+")


def _byte(ch):
    return _CP1252.get(ch, ord(ch) if ord(ch) < 256 else None)


# Quotes and spaces that follow a letter in correct German / French text: "Straße“", "café »" (with a
# no-break space) decode as UTF-8 by accident. After Â or Ã (which real text does not put there) they
# are mojibake all the same: "Ã«" is ë, "Â\xa0" a no-break space.
_TYPO = set("\u00a0\u00ab\u00bb\u201e\u201c\u201d\u2018\u2019\u201a\u2039\u203a\u2013\u2014\u2026")


def has_mojibake(text):
    """True if some run of Latin-1/cp1252 characters is really UTF-8 bytes decoded wrongly
    (`Ã©` -> é, `â€™` -> ’). Legit text such as `97.7°F`, `café` or `„Straße“` is not flagged."""
    for m in _MOJI_RUN.finditer(text):
        run = m.group()
        if run[0] not in "\u00c2\u00c3" and set(run[1:]) <= _TYPO:
            continue
        raw = bytes(_byte(c) for c in m.group())
        for end in range(len(raw), 1, -1):  # the longest valid UTF-8 prefix of the run
            try:
                raw[:end].decode("utf-8")
                return True
            except UnicodeDecodeError:
                continue
    return False


def has_control_chars(text):
    return any(unicodedata.category(c) == "Cc" and c not in "\n\t\r" for c in text)


_ENTITY = re.compile(r"&(?:[a-zA-Z][a-zA-Z0-9]{1,9}|#\d{1,6}|#[xX][0-9a-fA-F]{1,5});")
_TAG = re.compile(r"</?(?:br|p|div|span|sup|sub|b|i|u|em|strong|img|table|tr|td|th|a|li|ul|ol|font)"
                  r"(?:\s[^<>]*)?/?>", re.I)


def has_html_entity(text):
    """`&amp;`, `&#39;`, `&epsiv;`: markup escapes left in the text (a bare "&" is fine)."""
    return bool(_ENTITY.search(text))


# --- references to figures and tables that a text-only item does not carry ----------------------

# Things an item can "show". The weak ones (smear, specimen, radiograph...) also occur as plain
# nouns ("Which of the following radiographs should be taken?"), so only "<X> is shown" counts for them.
_SEEN_WORDS = (r"figures?|fig\.|images?|pictures?|photo(?:graph)?s?|diagrams?|illustrations?|exhibits?|graphs?|charts?|"
               r"(?:photo|electron\s+)?micrographs?")
_SEEN = r"(?:" + _SEEN_WORDS + r")(?![\w-])"
_ANY = (r"(?:" + _SEEN_WORDS + r"|photomicrographs?|micrographs?|x[-‑‐ ]?rays?|radiographs?|"
        r"(?:ecg|ekg|electrocardiogram|eeg)s?|pedigree(?: chart)?|smears?|slides?|specimens?|tracings?|"
        r"scans?|mri|ultrasound|ultrasonography|sonograms?|angiograms?|echocardiograms?|endoscopy|"
        r"cardiotocographs?|findings|rash|lesions?)(?![\w-])")
_FIGURE = re.compile("|".join([
    r"\b" + _ANY + r"[^.?!\n]{0,60}?\b(?:is|are)\s+(?:\w+\s+and\s+)?(?:shown|depicted|displayed|provided|illustrated|pictured)\b",
    r"\bshown\s+(?:on|in)\s+(?:the\s+)?" + _ANY,
    r"\b(?:pictured|depicted)\s+(?:below|above|here)\b", r"\b(?:the|this)\s+picture\s+shows\b",
    r"\b(?:first|second|third|left|right|top|bottom)\s+(?:image|panel|figure)\b",
    r"\b(?:white|black|red|yellow|blue|green)\s+arrows?\b", r"\bdashed\s+line\b", r"\((?:gray|grey|black)\)",
    r"\b(?:shown|seen|depicted|illustrated|given|displayed|presented|marked|labell?ed)\s+(?:in|on|at)\s+"
    r"(?:the\s+)?(?:following\s+|accompanying\s+|attached\s+|adjacent\s+)?" + _SEEN,
    r"(?<!of )\b(?:this|the\s+(?:following|above|below|given|accompanying|attached|adjacent))\s+" + _SEEN,
    r"\b" + _SEEN + r"\s+(?:below|above)",
    r"\(\s*(?:see\s+)?(?:image|figure|fig\.?|exhibit)\b", r"\b(?:figure|image)\s+(?:\d|[A-H]\b)",
    r"\bsee\s+(?:the\s+)?(?:image|figure)", r"\(\s*figures?\s+[A-Z\d]",
    r"\b(?:marked|indicated|shown|pointed(?:\s+out)?|labell?ed)\s+(?:by|with|as)\s+(?:an?\s+|the\s+)?"
    r"(?:arrows?|arrowheads?|asterisks?|\*|letters?\s+[A-Z]\b)",
    r"\b(?:labell?ed|lettered)\s+(?:boxes|structures|areas|points|regions)\b",
    # "the figure shows", "the photomicrograph reveals"; "based on the image", "in the graph" ("the
    # patient's chart" is a record, so charts only with a verb of showing)
    r"\b(?:the|this|these)\s+(?:" + _SEEN_WORDS + r"|radiographs?|x[-‑‐ ]?rays?|scans?|tracings?|smears?)\s+"
    r"(?:shows?|showed|demonstrates?|depicts?|reveals?|illustrates?|displays?|represents?)\b",
    r"\b(?:based\s+on|according\s+to|from|in|on|using|see)\s+the\s+(?:figures?|images?|pictures?|photo(?:graph)?s?|"
    r"diagrams?|graphs?|illustrations?|(?:photo)?micrographs?)(?![\w-])",
    r"\b(?:the|an?)\s+arrows?(?:heads?)?(?![\w-])",
    # Chinese exam phrasing; 心电图示 ("the ECG shows") is text, not a picture.
    r"如图|见图|如下图|下图[中所是]|图中[所是]|上图|附图|暂无图",
    r"\[img\b|\b[\w~/.-]+\.(?:jpe?g|png|gif|bmp|tiff?)\b",  # an image file the text points at
]), re.I)
# "Please refer to the summary above": a shared passage the item was cut from.
_PASSAGE = re.compile(r"\brefer\s+to\s+the\s+(?:summary|abstract|passage|case|vignette)\s+(?:above|below)", re.I)
# A table the item refers to: "the following table", "in the table", "the table shows", "Table 2"; not
# "rolled off the table" or "table salt".
_TABLE = re.compile(r"\b(?:(?:the|this)\s+(?:following|above|below|given|accompanying|attached)\s+table\b"
                    r"|(?:in|from|see|using|use|to|according\s+to|based\s+on|shown\s+in|given\s+in|listed\s+in|"
                    r"summari[sz]ed\s+in)\s+(?:the|this)\s+table\b(?!\s+(?:salt|sugar|tennis|top))"
                    r"|(?:the|this)\s+table\s+(?:below|above|shows|lists|gives|summari[sz]es|presents|displays)\b"
                    r"|\btable\s+\d)|如下表|下表所示|下表[：:，,]|以下表格|见表\d*", re.I)
# Options that only point at other options: they break when options are shuffled or cut.
_OPTION_REF = re.compile(r"(?:all|none|both|neither|any|either)\s+(?:of\s+)?(?:the\s+)?(?:above|these|those)"
                         r"|(?:both|only|either|neither)?\s*\(?[a-e]\)?(?:\s*(?:,|and|&|or|nor|\+)\s*\(?[a-e]\)?)+"
                         r"|以上(?:都|均|皆|全|各项)?(?:是|对|正确|不是|不对|错误|都不是|均不是)?|[a-e][和与及、][a-e](?:[和与及、][a-e])*"
                         r"|[a-e]\s*\+\s*[a-e]", re.I)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
# "Results are shown." with nothing after it; "Labs are shown below: Na+ 139 ..." carries its content.
_SHOWN = re.compile(r"\b(?:is|are|as)\s+(?:shown|pictured|depicted|displayed|illustrated)"
                    r"(?:\s+(?:below|above|here|on\s+the\s+\w+))?\s*[.:;)]", re.I)


def _has_content(after):
    """Whether the text after "shown below:" carries the table itself: numbers or several lines."""
    return len(_NUMBER.findall(after)) >= 4 or after.strip().count("\n") >= 2


def references_missing_figure(question, options=()):
    if _FIGURE.search(question) or any(_FIGURE.search(o) for o in options):
        return True
    return any(not _has_content(question[m.end():m.end() + 400]) for m in _SHOWN.finditer(question))


def refers_to_options(option):
    return bool(_OPTION_REF.fullmatch(option.strip().strip(".:;!").strip()))


def too_short(question):
    """A bare topic ("Gingivitis", "大肠"): the stem that made it a question is lost."""
    cjk = len(re.findall(r"[\u3400-\u9fff]", question))
    latin = len(re.findall(r"[^\W\d_\u3400-\u9fff]+|\d+", question))
    return latin + cjk < 2 or (latin == 0 and cjk < 3)


def references_missing_table(text):
    """A table reference with no tabular content after it."""
    m = _TABLE.search(text)
    return bool(m) and not _has_content(text[m.end():])


# --- the filter ---------------------------------------------------------------------------------

def _norm_option(s):
    # Only case, width and spacing: "+ve" vs "-ve" and "<" vs ">" are different options.
    # Case stays too: genotypes "Bb" and "BB" differ.
    return " ".join(unicodedata.normalize("NFKC", s).split()).strip(" .;,:")


def check(rec, min_options=3):
    """The first reason `rec` is unusable, or None. min_options=3 keeps PubMedQA's yes/no/maybe."""
    q, opts, ans = rec.get("question"), rec.get("options"), rec.get("answer")
    if not isinstance(q, str) or not q.strip():
        return "empty_question"
    if not isinstance(opts, dict) or list(opts) != [chr(65 + i) for i in range(len(opts))]:
        return "bad_option_letters"
    if any(not isinstance(v, str) or not v.strip() for v in opts.values()):
        return "empty_option"
    if len(opts) < min_options:
        return "too_few_options"
    normed = [_norm_option(v) for v in opts.values()]
    if len(set(normed)) < len(normed):
        return "duplicate_options"
    if not isinstance(ans, str) or not ans or any(a not in opts for a in ans) or len(set(ans)) != len(ans):
        return "answer_not_in_options"
    if too_short(q):
        return "question_too_short"
    if any(refers_to_options(o) for o in opts.values()):
        return "option_refers_to_options"
    text = q + "\n" + "\n".join(opts.values())
    if has_mojibake(text):
        return "mojibake"
    if "\ufffd" in text:
        return "replacement_char"
    if has_control_chars(text):
        return "control_chars"
    if has_html_entity(text):
        return "html_entity"
    if _TAG.search(text):
        return "html_markup"
    meta = rec.get("meta") or {}
    if meta.get("text_only") is False or meta.get("image"):
        return "image_only"
    if references_missing_figure(q, list(opts.values())):
        return "missing_figure"
    if _PASSAGE.search(q):
        return "missing_passage"
    if references_missing_table(q):
        return "missing_table"
    try:
        validate_record(rec)
    except ValueError:
        return "schema"
    return None


def filter_records(records, stats=None, dropped=None, min_options=3):
    """Keep the records that pass check(); count drops in stats (a Counter, keys "drop:<reason>",
    plus "in" and "out" per source under "in:<source>" / "out:<source>") and append dropped ones,
    with meta.drop_reason, to the `dropped` list if given."""
    stats = Counter() if stats is None else stats
    kept = []
    for rec in records:
        src = rec.get("source", "?")
        stats[f"in:{src}"] += 1
        reason = check(rec, min_options)
        if reason is None:
            kept.append(rec)
            stats[f"out:{src}"] += 1
            continue
        stats[f"drop:{reason}"] += 1
        stats[f"drop:{src}:{reason}"] += 1
        if dropped is not None:
            dropped.append({**rec, "meta": {**(rec.get("meta") or {}), "drop_reason": reason}})
    return kept


@command("data.filter")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.filter",
                        description="Drop malformed MCQ records (empty/duplicate options, answer not "
                                    "among options, encoding artifacts, missing figures), counted by reason.")
    ap.add_argument("inp", help="input records JSONL")
    ap.add_argument("out", help="kept records JSONL")
    ap.add_argument("--dropped", help="write dropped records (with meta.drop_reason) here")
    ap.add_argument("--min-options", type=int_at_least(2), default=3)
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed JSON lines")
    a = ap.parse_args(argv)
    check_outputs(files=[a.out, a.dropped])
    stats, dropped = Counter(), []
    kept = filter_records(read_jsonl(a.inp, validate=False, skip_bad=a.skip_bad, stats=stats), stats,
                          dropped, a.min_options)
    write_outputs(a, kept, dropped, stats)


def write_outputs(a, kept, dropped, stats):
    """The end of a cleaning step's command (data.filter, data.dedup, data.decontam): the kept records to a.out, the
    dropped ones to a.dropped when asked, the counts on stdout as `name<TAB>count` lines."""
    write_jsonl(a.out, kept)
    if a.dropped:
        write_jsonl(a.dropped, dropped)
    for k, v in sorted(stats.items()):
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
