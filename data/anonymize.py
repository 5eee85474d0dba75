"""Rule-based scrubbing of person-identifying spans in question and option text.

What is removed (replaced by a tag such as [EMAIL]): e-mail addresses, phone numbers, medical
record / patient / ID numbers introduced by a label ("MRN 4482913", "病历号：20190311"), national
ID numbers, dates of birth ("DOB 03/14/1975", "born on 14 March 1975", "出生日期：1975年3月14日")
and street addresses ("221B Baker Street", "...路12号").

What is kept on purpose, because it is the clinical content the item tests: ages ("45-year-old"),
doses ("500 mg twice daily"), lab values ("6,500/mm^3", "Na+ 139 mEq/L"), vital signs
("122/77 mm Hg", "pulse 80/min"), durations and days of illness ("for 3 days", "2 weeks ago",
"on day 5"), years alone ("in 1998"), and calendar dates without a birth label: in exam items they
are study periods and the dates a regulation took effect, often the options themselves ("COPRA
came into action on: 15th April 1987 | ..."). The patterns are anchored on labels or on shapes that
clinical numbers do not take (3-3-4 digit phone groups, @, street suffixes), so a blood pressure
or a platelet count never looks like a phone number. Person names only after a title
("Mr. Smith", "Dr Jane Doe" -> "Mr. [NAME]"); a name detector without that anchor would eat eponyms
(Wilson, Graves), and a titled name is kept when an eponym word follows ("Dr. Down's syndrome") or a
verb of scientific credit ("Dr Bernhard Giesenhagen gave the classification"): that name is the content.

    python -m data.anonymize in.jsonl out.jsonl
"""
import re
from collections import Counter

from eval.records import ArgumentParser, check_outputs, command, read_jsonl, write_jsonl

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_DATE = (r"(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)\d{2}"                 # 03/14/1975, 14.03.1975
         r"|(?:19|20)\d{2}[/.-]\d{1,2}[/.-]\d{1,2}"                   # 1975-03-14
         r"|" + _MONTH + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{2}"   # March 14, 1975
         r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(?:19|20)\d{2}"  # 14 March 1975
         r"|(?:19|20)\d{2}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日)")           # 1975年3月14日

_DOB_DATE = _DATE[:-1] + r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{2}(?!\d))"  # a labelled birth date may have a 2-digit year
_EPONYM = (r"(?:'s)?\s+(?:syndrome|disease|sign|test|score|law|reflex|maneuver|manoeuvre|operation|procedure|"
           r"classification|criteria|triad|phenomenon|method|technique|fracture|nodes?|cells?|solution|stain|"
           r"incision|position|ring|bod(?:y|ies)|reaction|effect|rule|formula|scale|index|lines?|tumou?r|"
           r"gave|described|introduced|discovered|proposed|classified|coined|developed|invented|first)\b")
_NAME = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)?"

_STREET = (r"(?:Street|St\.|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.|Court|Ct\.?|"
           r"Place|Pl\.|Terrace|Way|Highway|Hwy\.?|Parkway|Pkwy\.?|Square|Sq\.)")

# (tag, compiled pattern, group holding the span to replace: 0 = the whole match)
RULES = [
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), 0),
    # a labelled date of birth first, so the generic date rule does not leave the label dangling
    ("DOB", re.compile(r"(?:\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*[:#]?\s*|"
                       r"出生日期\s*[:：]?\s*|生于\s*)(" + _DOB_DATE + r")", re.I), 1),
    ("ID", re.compile(r"(?:\b(?:MRN|medical\s+record\s+(?:number|no\.?|#)|record\s+(?:number|no\.?|#)|"
                      r"patient\s+(?:ID|number|no\.?)|hospital\s+(?:ID|number|no\.?)|chart\s+(?:number|no\.?|#)|"
                      r"SSN|social\s+security\s+(?:number|no\.?)|case\s+(?:number|no\.?))\s*[:#]?\s*|"
                      r"(?:病历号|病案号|住院号|门诊号|身份证号?(?:码)?|医保卡号)\s*[:：]?\s*)"
                      r"((?=(?:(?-i:[A-Z]{1,3})[ -]?)?(?:\d[ -]?){4})(?:(?-i:[A-Z]{1,3})[ -]?)?\d{2,}(?:[ -]\d{2,})*(?-i:[A-Z])?(?!\w))",
                      re.I), 1),
    ("ID", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), 0),                 # US SSN
    ("ID", re.compile(r"(?<!\d)[1-9]\d{5}(?:19|20)\d{2}(?:0[1-9]|1[0-2])\d{2}\d{3}[\dXx](?!\d)"), 0),  # CN ID
    ("PHONE", re.compile(r"(?<![\w/.])(?:\+?1[\s.-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w/])"), 0),
    ("PHONE", re.compile(r"(?<![\w/.])\+\d{1,3}[\s.-]\d{1,4}(?:[\s.-]\d{2,4}){2,3}(?![\w/])"), 0),
    ("PHONE", re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), 0),                           # CN mobile
    ("PHONE", re.compile(r"(?:\b(?:phone|tel|telephone|mobile|cell|fax)\b\.?\s*(?:no\.?|number|#)?\s*[:#]?\s*|"
                         r"(?:电话|手机|联系方式)\s*[:：]?\s*)(\+?[\d()][\d()\s.-]{6,}\d)", re.I), 1),
    # not "the 1973 Supreme Court": no article before the number, and a year is no house number
    ("ADDRESS", re.compile(r"(?<![Tt]he )(?<![Ii]n )(?<![Oo]f )\b(?!(?:18|19|20)\d\d\b)\d{1,5}[A-Z]?\s+(?:[A-Z][a-z]+\.?\s+){1,3}"
                           + _STREET +
                           r"(?:,?\s+(?:Apt|Apartment|Suite|Unit)\.?\s*#?\s*\w+)?"), 0),
    ("ADDRESS", re.compile(r"[\u4e00-\u9fff]{2,12}(?:路|街|大道|巷|弄)\d{1,5}号(?:\d{1,4}室)?"), 0),
    ("NAME", re.compile(r"\b(?:Mr|Mrs|Ms|Dr)\.?\s+(" + _NAME + r"(?:\s+" + _NAME + r")?)(?!(?:\s+(?:and|&)\s+(?:Mr|Mrs|Ms|Dr)\.?\s+" + _NAME + r")?" + _EPONYM + r")"
                        r"(?![\w'-]|\s+[A-Z][a-z])"), 1),
]


def scrub(text, counts=None):
    """Return text with identifying spans replaced by [TAG]; count replacements per tag."""
    for tag, pat, grp in RULES:
        def repl(m, tag=tag, grp=grp):
            if counts is not None:
                counts[tag] += 1
            if grp == 0:
                return f"[{tag}]"
            s, e = m.span(grp)
            return m.group(0)[:s - m.start()] + f"[{tag}]" + m.group(0)[e - m.start():]
        text = pat.sub(repl, text)
    return text


def anonymize_record(rec, counts=None):
    """A copy of rec with question and options scrubbed; meta.anonymized lists what was replaced."""
    local = Counter()
    q = scrub(rec["question"], local)
    opts = {k: scrub(v, local) for k, v in rec["options"].items()}
    if counts is not None:
        counts.update({f"anon:{k}": v for k, v in local.items()})
        if local:
            counts[f"anon:records:{rec['source']}"] += 1
    if not local:
        return rec
    return {**rec, "question": q, "options": opts, "meta": {**rec["meta"], "anonymized": sorted(local)}}


def anonymize(records, stats=None):
    return [anonymize_record(r, stats) for r in records]


@command("data.anonymize")
def main(argv=None):
    ap = ArgumentParser(prog="python -m data.anonymize",
                        description="Replace e-mails, phone numbers, record numbers, dates of birth and "
                                    "addresses in records with [TAG]s; clinical numbers are kept.")
    ap.add_argument("inp", help="input records JSONL")
    ap.add_argument("out", help="output records JSONL")
    ap.add_argument("--skip-bad", action="store_true", help="count and skip malformed input lines")
    a = ap.parse_args(argv)
    check_outputs(files=[a.out])
    stats = Counter()
    write_jsonl(a.out, anonymize(read_jsonl(a.inp, skip_bad=a.skip_bad, stats=stats), stats))
    for k, v in sorted(stats.items()):
        print(f"{k}\t{v}")


if __name__ == "__main__":
    main()
