"""The paper's verifiable signals on a teacher's chain of thought: pure text checks, no model, no I/O.

Fleming-R1 keeps a distilled trajectory only if it passes "verifiable signals (consistency of intermediate
calculations, unit correctness, alignment with guideline snippets)", and among the passing ones prefers chains that
state their assumptions and remaining uncertainty. The first two signals and that preference are checks on the text
alone and live here; the guideline check needs an LLM judge and lives in data/distill.py, which runs all of them
(verdict, pick).

calculation_error(think): recomputes each calculation the chain states in a form that parses unambiguously
    ("A op B ... = C", "C is (4,000 / 8,000) * 100", "dividing A by B gives C", "X% of Y is Z") and names the
    first whose stated result is off beyond rounding (relative error over 2%, 10% after "about", and more than
    half a unit of its last digit; a percentage stated for a fraction, or a result rescaled by a power of 1000
    into a unit no operand has, is the same value). calculations(think) lists them all.
unit_error(think, question): a quantity given in a unit its kind cannot have ("hemoglobin 6 mg/dL", "temperature
    38.9 mmHg"), or the same value of a quantity named earlier (in the question or the chain) in another unit of
    its family ("25 g of salt", then "25 mg of salt"). unit_mentions(text) lists the numbers given with a known
    unit and the quantity each belongs to.
states_limits(think): 0, 1 or 2: whether the chain states an assumption it makes ("assuming ...") and whether it
    states an uncertainty that remains ("I can't rule out ...", "the question doesn't say ..."); a bare hedge
    ("maybe", "wait") is neither.

A false drop of a good chain is worse than a missed error, so only arithmetic that parses unambiguously is
recomputed, and a unit is wrong only against a named quantity.
"""
import ast
import operator
import re

# ----------------------------------------------------------------------------- calculations

NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_OPERAND_UNIT = (r"(?:mcg|µg|μg|ug|mg|g|kg|grams?|milligrams?|kilograms?|mEq|mmol|µmol|μmol|ml|mL|dL|dl|L|liters?"
                 r"|litres?|IU|units?|kcal|cal|mmHg|cm|mm|m|hours?|hrs?|h|min|minutes?|days?|weeks?|months?|years?"
                 r"|lbs?|pounds?|beats|breaths|tablets?|doses?|people|persons?|patients?|cases|births|deaths)")
_TOKEN = re.compile("|".join([
    rf"(?P<num>(?<![\w.,/])(?:{NUM}))(?P<pct>\s?%)?(?:\s?{_OPERAND_UNIT}(?:/{_OPERAND_UNIT})*)?(?![\w/%])",
    r"(?P<lp>\()", r"(?P<rp>\))",
    # "-" and "/" only between spaces: "20-30 minutes" is a range and "36/1000" a rate, not arithmetic
    r"(?P<op>[×*÷+−^]|(?<=\s)[x/-](?=\s)|\b(?:times|multiplied\s+by|divided\s+by|plus|minus)\b)",
    r"(?P<of>\bof\b)", r"(?P<word>[^\s()]+)"]))
_OPS = {"×": "*", "*": "*", "x": "*", "times": "*", "multiplied": "*", "÷": "/", "/": "/", "divided": "/", "+": "+",
        "plus": "+", "−": "-", "-": "-", "minus": "-", "^": "**"}
# the stated result: not the start of a range ("0.25-0.5", "5 to 10") or of more arithmetic
_RESULT = (r"\s*(?P<approx>(?:about|approximately|roughly|around|approx\.?|nearly|almost|~|≈)\s*)?"
           rf"(?P<res>(?<![\w.,]){NUM})(?P<rpct>\s?%)?"
           r"(?![\w/]|\.\d|,\d|\s?[-–×*÷+^]\s?\d|\s[x/]\s\d|\s+(?:to|or)\s+\d)")
_CONNECT = (r"\s*,?\s*(?:(?:which|that|this|it)\s+)?(?:=|≈|equals?|is\s+equal\s+to|is|was|gives?(?:\s+(?:us|me))?"
            r"|giving(?:\s+(?:us|me))?|leav(?:es|ing)(?:\s+(?:us|me))?(?:\s+with)?|comes?\s+(?:out\s+)?to"
            r"|works?\s+out\s+to|results?\s+in|yields?|(?:and\s+)?(?:we|I)\s+get(?:\.\.\.)?)")
STATED = re.compile(_CONNECT + _RESULT)
# "dividing 1 by 0.10 gives 10", "multiply 6 mg/L by 455 liters, and I get 2730"
_WITH_UNIT = rf"(?:\s?%|\s?{_OPERAND_UNIT}(?:/\w+)?)?"
VERBAL = re.compile(rf"\b(?P<verb>divid|multipl|subtract|add)\w*\s+(?P<a>{NUM}){_WITH_UNIT}(?:\s+\w+){{0,3}}?"
                    rf"\s+(?P<prep>by|from|to|and)\s+(?P<b>{NUM}){_WITH_UNIT}(?:\s+of\s+\w+)?" + _CONNECT + _RESULT)
_VERBAL_EXPR = {("divid", "by"): "{a} / {b}", ("multipl", "by"): "{a} * {b}", ("subtract", "from"): "{b} - {a}",
                ("add", "to"): "{a} + {b}", ("add", "and"): "{a} + {b}"}
_CLAUSE = re.compile(r"(?<=[.!?;:])(?<!\.\.\.)\s+|(?<=[。；！？])|\n+")  # "and I get... 2730" is one clause
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.Pow: operator.pow}


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        a, b = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Sub) and a < b:
            raise ValueError("a range, not a difference")  # "5 - 10 mg, which is ..."
        if isinstance(node.op, ast.Pow) and abs(b) > 12:
            raise ValueError("too large")
        return _ARITH[type(node.op)](a, b)
    raise ValueError("not arithmetic")


def expression_before(text):
    """The arithmetic that ends `text`, as (Python expression, whether an operand was a percentage, where it
    starts in `text`); None when there is no operator or the expression does not start cleanly after a word."""
    toks = [(m.lastgroup if m.group("num") is None else "num", m) for m in _TOKEN.finditer(text)]
    expr = []
    for kind, m in reversed(toks):
        if kind == "word":
            break
        expr.insert(0, (kind, m))
    parts, pct = [], False
    for j, (kind, m) in enumerate(expr):
        if kind == "num":
            v = m.group("num").replace(",", "")
            pct = pct or bool(m.group("pct"))
            parts.append(f"({v} / 100)" if m.group("pct") and j + 1 < len(expr) and expr[j + 1][0] == "of" else v)
        elif kind == "of":  # "40% of 25 g"
            if not (j and expr[j - 1][0] == "num" and expr[j - 1][1].group("pct") and j + 1 < len(expr)):
                return None
            parts.append("*")
        elif kind == "op":
            parts.append(_OPS[m.group(0).split()[0]])
        else:
            parts.append(m.group(0))
    while parts and parts[0] == "(" and parts.count("(") > parts.count(")"):
        parts.pop(0)  # "(that is 4 + 3 = 7": the clause's own parenthesis
    if not parts or parts[0] in _OPS.values() or not any(k in ("op", "of") for k, _ in expr):
        return None
    return " ".join(parts), pct, expr[0][1].start()


def value(expr):
    """The value of an arithmetic expression, or None when it does not evaluate."""
    try:
        return _evaluate(ast.parse(expr, mode="eval"))
    except (ValueError, SyntaxError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def off(val, expr, pct, m, rescaled=False):
    """Whether the result `m` states is off from `val` beyond rounding: relative error over 2% (10% after "about")
    and more than half a unit of its last digit. A percentage may be stated for a fraction and the other way, and
    a result `rescaled` into a unit no operand has ("6 mg/L x 455 L = 2.73 g") by a power of 1000."""
    said, stated = float(m.group("res").replace(",", "")), m.group("res")
    half_digit = 0.5 * 10 ** -len(stated.split(".")[1]) if "." in stated else 0.5
    forms = [val] + ([val * 100] if m.group("rpct") and "100" not in expr else [])
    forms += [val / 100] if pct and not m.group("rpct") else []
    forms += [val * 10 ** e for e in (-6, -3, 3, 6)] if rescaled else []
    rel = 0.10 if m.group("approx") else 0.02
    return all(abs(said - v) > max(rel * abs(v), half_digit) for v in forms)


def calculations(think):
    """(statement, expression, true value, wrong) for each calculation the chain states that parses
    unambiguously: "A op B ... = C", "C is (4,000 / 8,000) * 100", "dividing A by B gives C", "X% of Y is Z"."""
    out = []
    for clause in _CLAUSE.split(think):
        found = [(m, expression_before(clause[:m.start()])) for m in STATED.finditer(clause)]
        for m in VERBAL.finditer(clause):
            form = _VERBAL_EXPR.get((m.group("verb"), m.group("prep")))
            a, b = m.group("a").replace(",", ""), m.group("b").replace(",", "")
            found.append((m, form and (form.format(a=a, b=b), "%" in clause[m.start():m.start("res")], m.start())))
        for m, got in found:
            if got and (val := value(got[0])) is not None:
                expr, pct, start = got
                unit = re.match(rf"\s?({_OPERAND_UNIT})(?!\w)", clause[m.end():])
                rescaled = bool(unit) and unit.group(1) not in re.findall(rf"(?<=\d)\s?({_OPERAND_UNIT})(?!\w)",
                                                                          clause[start:m.start("res")])
                out.append((clause[:m.end()].strip(), expr, val, off(val, expr, pct, m, rescaled)))
    return out


def calculation_error(think):
    """The first stated calculation whose result is wrong, as "<statement> (it is <value>)", else None."""
    for stated, _, val, wrong in calculations(think):
        if wrong:
            return f"{stated[-120:]} (it is {val:.4g})"
    return None


# ----------------------------------------------------------------------------- units

# unit spellings by family: the same value of the same quantity in two units of one family is a contradiction
# (mg vs g for one dose; mmol/L vs mg/dL for one lab value). mEq/L counts as mmol/L (equal for Na, K, Cl, HCO3).
UNITS = {
    "mass": {"mcg": "mcg|µg|μg|ug|micrograms?", "mg": "mg|milligrams?", "g": "g|gm|grams?", "kg": "kg|kilograms?",
             "lb": "lbs?|pounds?"},
    "volume": {"ml": "ml|cc|millilit(?:er|re)s?", "dl": "dl", "l": "l|lit(?:er|re)s?"},
    "pressure": {"mmhg": r"mm ?hg", "kpa": "kpa", "cmh2o": r"cm ?h2o"},
    "temperature": {"°c": "°c|ºc|degrees? c(?:elsius)?", "°f": "°f|ºf|degrees? f(?:ahrenheit)?"},
    "concentration": {"mg/dl": "mg/dl|mg%", "g/dl": "g/dl|g%", "g/l": "g/l", "mg/l": "mg/l",
                      "mcg/ml": "(?:mcg|µg|μg|ug)/ml", "mcg/dl": "(?:mcg|µg|μg|ug)/dl", "ng/ml": "ng/ml",
                      "pg/ml": "pg/ml", "mmol/l": "mmol/l|meq/l",
                      "umol/l": "(?:µ|μ|u)mol/l", "nmol/l": "nmol/l"},
    "rate": {"/min": "/min|bpm|beats per minute|breaths per minute|beats/min|breaths/min"},
}
_SPELLINGS = sorted(((spell, unit, fam) for fam, units in UNITS.items() for unit, spell in units.items()),
                    key=lambda x: -len(x[0]))
_MENTION = re.compile(rf"(?<![\w.,/])(?P<val>(?:{NUM})(?:/\d{{2,3}})?)"  # "107/70 mmHg" is one value
                      rf"\s?(?P<unit>{'|'.join(s for s, _, _ in _SPELLINGS)})(?![\w/])", re.I)
# named quantities, spelled as in vignettes and lab lists; a name anchors a value only when nothing but filler
# words stand between them ("hemoglobin is really low at 6 g/dL")
QUANTITIES = {"blood pressure": r"(?:\w+ )?pressure|bp", "temperature": "temperature|temp",
              "heart rate": r"heart rate|pulse(?: rate)?", "respiratory rate": "respiratory rate|respirations",
              "hemoglobin": "ha?emoglobin|hg?b", "weight": "weigh(?:s|ing|t|ed)?", "pco2": "pa?co2", "po2": "pa?o2",
              "glucose": "glucose|blood sugar", "sodium": "sodium|na", "potassium": "potassium|k",
              "chloride": "chloride|cl", "bicarbonate": "bicarbonate|hco3-?", "calcium": "calcium|ca",
              "magnesium": "magnesium", "phosphate": r"phosph\w+|po4", "albumin": "albumin", "creatinine": "creatinine",
              "urea": "urea|bun", "bilirubin": "bilirubin", "lactate": "lactate", "cholesterol": "cholesterol"}
# what a quantity may be measured in, for quantities with no dose reading
KIND = {"blood pressure": {"mmhg", "kpa", "cmh2o"}, "pco2": {"mmhg", "kpa"}, "po2": {"mmhg", "kpa"},
        "temperature": {"°c", "°f"}, "heart rate": {"/min"}, "respiratory rate": {"/min"},
        "hemoglobin": {"g/dl", "g/l", "mmol/l"}, "weight": {"mcg", "mg", "g", "kg", "lb"}}
_FILLER = set("""a an the is was are were be been at of to from than by with and or about around only just approximately
roughly nearly over under below above like that this it its his her their our which level levels value values
concentration count total low high normal elevated reduced raised decreased very really quite still already now
currently measured measures measuring reads reading shows showing sitting stands standing""".split())


def _unit(text):
    t = text.lower()
    return next((unit, fam) for spell, unit, fam in _SPELLINGS if re.fullmatch(spell, t))


def _quantity(before, after):
    """The quantity a value belongs to: a name just before it (filler words aside), "... of <noun>" after it,
    or the word right before it ("aspirin 325 mg"); None when none is clear."""
    words = re.findall(r"[^\W\d][\w-]*|\d", before)
    i = len(words)
    while i and words[i - 1].lower() in _FILLER:
        i -= 1
    for n in (2, 1):  # "blood pressure", "heart rate" before "pressure", "rate"
        name = " ".join(words[max(0, i - n):i]) if i >= n else ""
        q = next((q for q, pat in QUANTITIES.items() if name and re.fullmatch(pat, name, re.I)), None)
        if q:
            return q
    of = re.match(r"\s+of\s+(?:the\s+|a\s+|an\s+|her\s+|his\s+)?([^\W\d][\w-]+)", after)
    if of and of.group(1).lower() not in _FILLER:
        return of.group(1).lower()
    last = words[-1] if words else ""
    if i == len(words) and len(last) > 3 and last.isalpha() and not _MENTION.match("1 " + last):  # not a unit
        return last.lower()
    return None


def unit_mentions(text):
    """(quantity or None, value, unit, family, text) for each number given with a known unit."""
    out = []
    for clause in _CLAUSE.split(text):
        for m in _MENTION.finditer(clause):
            unit, fam = _unit(m.group("unit"))
            out.append((_quantity(clause[:m.start()], clause[m.end():]), m.group("val").replace(",", ""), unit, fam,
                        m.group(0)))
    return out


def unit_error(think, question=""):
    """A quantity in the chain given in a unit its kind cannot have ("hemoglobin 6 mg/dL"), or the same value of a
    quantity named earlier in another unit of its family (question "25 g of salt", chain "25 mg of salt")."""
    seen = {}
    for part, text in (("question", question), ("chain", think)):
        for q, val, unit, fam, said in unit_mentions(text):
            if q is None:
                continue
            if part == "chain" and q in KIND and unit not in KIND[q]:
                return f"{q} given as '{said}'"
            other = seen.get((q, val, fam))
            if part == "chain" and other and other[0] != unit:
                return f"{q}: '{said}' after '{other[1]}'"
            seen.setdefault((q, val, fam), (unit, said))
    return None


# ----------------------------------------------------------------------------- stated assumptions and uncertainty

# Explicit statements of what a chain assumes and of what stays uncertain: the paper's selection criterion.
# A bare "maybe" or "wait" is a hedge, not a statement; "assuming ...", "the question doesn't say ...",
# "I can't rule out ..." are.
ASSUMPTION = re.compile(r"\b(?:assuming|(?:I|we)(?:'m|’m| am|'re|’re| are| will| would)? (?:\w+ )?assume"
                        r"|let(?:'|’)?s (?:assume|say)|if we (?:assume|take it)|(?:this|that|which) assumes"
                        r"|(?:my|our|the|this|key|main) assumptions?|presumably|on the assumption)\b|假设|假定", re.I)
UNCERTAINTY = re.compile(r"\b(?:(?:not|n't|n’t) (?:entirely |completely |fully |totally |100% )?(?:sure|certain)"
                         r"|uncertain (?:whether|if|about)|(?:some|remaining|residual) uncertainty"
                         r"|can(?:not|'t|’t) (?:completely |fully |entirely )?(?:rule out|exclude|be (?:sure|certain))"
                         r"|can(?:not|'t|’t) be (?:completely |fully )?(?:ruled out|excluded)"
                         r"|(?:would|we'd|we’d|I'd|I’d) need (?:to|more)"
                         r"|without (?:more|further|additional|those|these|that)\b"
                         r"|(?:does not|doesn't|doesn’t|did not|didn't|didn’t)"
                         r" (?:say|state|mention|specify|tell us|give)"
                         r"|(?:not|isn't|isn’t|wasn't|wasn’t|aren't|aren’t) (?:explicitly )?"
                         r"(?:specified|stated|mentioned|given)\b"
                         r"|remains? (?:possible|unclear|uncertain|open)|can(?:not|'t|’t) (?:say|know|tell) for sure)"
                         r"|不确定|无法排除|不能排除|尚不明确|需要进一步", re.I)


def states_limits(think):
    """How many of the two the chain states explicitly: an assumption it makes, an uncertainty that remains."""
    return bool(ASSUMPTION.search(think)) + bool(UNCERTAINTY.search(think))
