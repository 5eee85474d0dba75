"""Turn a sampled question (kg/sample.py) into an exam-style stem, and optionally have an LLM polish it.

Templates write what the facts say and nothing else: the findings of the vignette are the
has_phenotype facts, the patient's age is the onset fact, the named drug or disease is a constant of
the query. An LLM rewrite (llm_rewrite) may change the wording but is rejected if it names the answer.
"""
import hashlib
import re
import weakref

ONSET = {  # HPO onset term -> the patient in the vignette
    "Congenital onset": "A newborn", "Neonatal onset": "A 10-day-old neonate", "Infantile onset": "A 7-month-old infant",
    "Childhood onset": "A 6-year-old child", "Pediatric onset": "A child", "Juvenile onset": "A 14-year-old adolescent",
    "Young adult onset": "A 24-year-old patient", "Early young adult onset": "A 19-year-old patient",
    "Intermediate young adult onset": "A 26-year-old patient", "Late young adult onset": "A 34-year-old patient",
    "Adult onset": "A 40-year-old patient", "Middle age onset": "A 52-year-old patient",
    "Late onset": "A 70-year-old patient", "Fetal onset": "A fetus", "Antenatal onset": "A fetus",
    "Embryonal onset": "A fetus", "Second trimester onset": "A fetus", "Third trimester onset": "A fetus",
    "Late first trimester onset": "A fetus"}

ASK = {
    "diagnosis": "Which of the following is the most likely diagnosis?",
    "diagnosis_gene": "A pathogenic variant in which of the following genes most likely explains this condition?",
    "diagnosis_inheritance": "Which of the following is the most likely mode of inheritance of this condition?",
    "diagnosis_treatment": "Which of the following drugs is indicated for the most likely diagnosis?",
    "diagnosis_cause": "Which of the following is the most likely underlying cause of this condition?",
    "treatment_class": "A drug indicated for the most likely diagnosis belongs to which of the following "
                       "pharmacologic classes?",
    "diagnosis_drug_target": "A drug indicated for the most likely diagnosis acts on which of the following "
                             "molecular targets?",
    "diagnosis_test": "Further evaluation is most likely to show which of the following?",
}


EPONYM_NEXT = {"sign", "syndrome", "disease", "malformation", "anomaly", "phenomenon", "reflex", "spots", "nodules",
               "nodes", "sequence", "palsy", "deformity", "phenomenon", "triad"}

ADJECTIVE = ("ic", "al", "ous", "ive", "ary", "ed", "ar", "ory", "ent", "ant", "oid", "ile", "less", "ing", "ful")


def lower_first(name):
    """'Global developmental delay' -> 'global developmental delay'; 'EEG abnormality', 'Horner syndrome',
    "Beevor's sign" and 'Dandy-Walker malformation' (eponyms) stay."""
    words = name.split(" ")
    first = words[0]
    if sum(c.isupper() for c in first) > 1 or any(c.isdigit() for c in first):
        return name
    if first[:1].isupper() and (first.endswith("'s") or (len(words) > 1 and words[1].lower() in EPONYM_NEXT
                                                         and not first.lower().endswith(ADJECTIVE))):
        return name
    return name[:1].lower() + name[1:]


def option_text(g, node):
    name = g.names[node]
    return name[:1].upper() + name[1:]


def join(items):
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _pick(key, choices):
    """A phrasing variant chosen by a hash of the question, so the same question always reads the same."""
    return choices[int(hashlib.md5(key.encode()).hexdigest(), 16) % len(choices)]


# a finding HPO files as a phenotype that is a test result: not a reason to see a physician (kg/REVIEW.md, issue 22:
# homocitrullinuria, metabolic alkalosis, T2 hypointensity, hypergranulosis, a direct antiglobulin test)
TEST_RESULT = re.compile(r"antibod|biopsy|\bMRI\b|\bCT\b|\bEEG\b|\bEMG\b|\bECG\b|histolog|electro\w+gra|"
                         r"positivity|\bserum\b|\bplasma\b|circulating|concentration|\blevels?\b|on imaging|"
                         r"radiograph|ultraso|microscop|uria\b|emia\b|philia\b|cytosis\b|penia\b|acidosis|alkalosis|"
                         r"\bT[12]\b|signal|hyperintens|hypointens|intensity|granulosis|parakeratosis|acanthosis|spongiosis|\btests?\b|"
                         r"\bactivity\b|translucency|\bproportion\b|\bratio\b|\bcells?\b|accumulation|inclusion|"
                         r"deficiency$|\bcontent\b|\bsecretion\b|\bresponse\b|\bnitrogen\b|"
                         r"\bfecal\b|\bstool\b|\bCSF\b|cerebrospinal|\bbone marrow\b|\bfibroblasts?\b|\bmitochondri|"
                         r"metachromas|\bsedimentation\b|\bprothrombin\b|\btime\b|\bwasting\b|\bnatriuresis\b|infiltrat|"
                         r"electrophysiolog|evoked potential|discharges|myelinat|\bMRS\b|echogenic|glycoprotein|aggregation", re.I)
# HPO branches whose terms a test finds (metabolism/homeostasis, cellular phenotype), and the signs among them
RESULT_BRANCHES = ("HP:0001939", "HP:0025354", "HP:0002353")  # ... and EEG abnormality
SIGN = re.compile(r"edema|swelling|fever|therm|temperature|\burine\b.*(colou?r|red|orange|green|dark|black)|^(red|orange|"
                  r"green|dark|black|blue) urine|diabetes|obesity|dehydrat|amyloidosis|effusion|ascites", re.I)
_RESULTS = weakref.WeakKeyDictionary()


def is_result(g, p):
    """Is finding p a test result (a laboratory, imaging or tissue finding) rather than a symptom or sign? A
    lab/imaging node, a name that says so, or an HPO term under metabolism/homeostasis or the cellular phenotype
    (homocitrullinuria, hypokalemic alkalosis), but for the signs there (edema, fever, red urine)."""
    cache = _RESULTS.setdefault(g, {})
    if p not in cache:
        name = g.names[p]
        cache[p] = g.type_name(p) != "phenotype" or (not SIGN.search(name) and (
            bool(TEST_RESULT.search(name)) or bool(_hpo_ancestors(g, p) & _branch_nodes(g))))
    return cache[p]


def _branch_nodes(g):
    return {g.index[b] for b in RESULT_BRANCHES if b in g.index}


def _hpo_ancestors(g, p):
    seen, todo = {p}, [p]
    while todo:
        for m in g.out(todo.pop(), "subclass_of").tolist():
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen
LABEL = re.compile(r"^([A-Z][A-Za-z]{1,5}): (.+)$")  # "EMG: myopathic abnormalities"


def finding_text(name):
    """A finding as the stem says it: an HPO 'EMG: myopathic abnormalities' becomes 'myopathic abnormalities on
    EMG'."""
    m = LABEL.match(name)
    return f"{lower_first(m.group(2))} on {m.group(1)}" if m else lower_first(name)


def vignette(g, q):
    """The patient story from the ?d facts: symptoms and signs, then laboratory and imaging findings."""
    key = repr(q.facts)
    groups = {"phenotype": [], "lab_finding": [], "imaging_finding": []}
    who = "A patient"
    for s, r, o in q.facts:
        if s != "?d" or isinstance(o, str):
            continue
        if r == "has_phenotype":
            kind = g.type_name(o)
            if kind == "phenotype" and is_result(g, o):
                kind = "lab_finding"  # an antibody, urine or biopsy result is found, not complained of
            groups[kind].append(finding_text(g.names[o]))
        elif r == "onset":
            who = ONSET.get(g.names[o], who)
    if who == "A fetus":
        text = f"Prenatal evaluation of a fetus shows {join(groups['phenotype'])}." if groups["phenotype"] else \
            "A fetus is evaluated prenatally."
    elif groups["phenotype"]:
        verb = _pick(key, ["presents with", "is evaluated for", "is brought to the physician because of",
                           "is referred for assessment of"])
        text = f"{who} {verb} {join(groups['phenotype'])}."
    elif groups["lab_finding"]:
        text = f"Testing in {who[0].lower() + who[1:]} shows {join(groups.pop('lab_finding'))}."
    else:
        text = f"Imaging in {who[0].lower() + who[1:]} shows {join(groups.pop('imaging_finding'))}."
    if groups.get("lab_finding"):
        text += " " + _pick(key + "l", ["Laboratory studies show", "Investigations reveal", "Testing shows"]) + \
                f" {join(groups['lab_finding'])}."
    if groups.get("imaging_finding"):
        text += f" Imaging shows {join(groups['imaging_finding'])}."
    return text


COMPLAINT = re.compile(r"(presents with|is evaluated for|because of|for assessment of) ([^.]*)\.")


def lint(text):
    """What reads wrong in a stem, as a list of reasons (empty when clean): a pasted label ('EMG: ...'), a word
    repeated within a few words ('circulating vitamin B6 circulating'), a bare opening ('A patient is evaluated.'),
    a test result given as the reason for the visit ('comes in because of <a biopsy result>')."""
    out = []
    if re.search(r"\b[A-Z][A-Za-z]{1,5}: [a-z]", text):
        out.append("pasted label")
    if re.search(r"\b(\w{5,})\b(?:\W+\w+){0,3}?\W+\1\b", text, re.I):
        out.append("repeated word")
    if re.match(r"^[^.]* is evaluated\.", text):
        out.append("bare opening")
    m = COMPLAINT.search(text.split(". ")[0] + ".")
    if m and TEST_RESULT.search(m.group(2)):
        out.append("test result as the reason for the visit")
    return out


def stem(g, q):
    """The question text for a sampled Question."""
    if q.template in ASK:
        return vignette(g, q) + " " + ASK[q.template]
    consts = {r: (s, o) for s, r, o in q.facts}
    if q.template == "drug_mechanism":
        drug = q.facts[0][0]
        who = f"A patient with {lower_first(g.names[q.context['disease']])}" if "disease" in q.context else "A patient"
        return (f"{who} is started on {lower_first(g.names[drug])}. Which of the following best describes the "
                f"mechanism of action or pharmacologic class of this drug?")
    if q.template == "drug_for_disease_target":
        d = consts["indicated_for"][1]
        t = consts["targets"][1]
        action = q.context.get("action") or "modulator"
        art = "an" if action[:1] in "aeiou" else "a"
        return (f"Which of the following drugs is indicated for {lower_first(g.names[d])} and acts as {art} "
                f"{action} of {g.names[t]}?")
    if q.template == "drug_finding":
        return (f"A patient is started on {lower_first(g.names[q.facts[0][0]])}. Which of the following findings is "
                f"this patient most likely to have?")
    if q.template == "shared_target":
        return (f"Which of the following drugs acts on the same molecular target as {lower_first(g.names[q.facts[0][0]])}, "
                f"in the same way?")
    if q.template == "side_effect":
        drug = q.facts[0][0]
        return f"Which of the following adverse effects has been reported with {lower_first(g.names[drug])}?"
    raise ValueError(f"no wording for template {q.template!r}")


REWRITE_PROMPT = (
    "Rewrite this multiple-choice exam question stem so it reads like a USMLE-style clinical vignette. "
    "Keep every stated finding, age and named drug or disease; add no new findings; do not mention any answer "
    "option; keep the final question sentence's meaning. Reply with the rewritten stem only.\n\nStem: {stem}")


def llm_rewrite(rec, chat):
    """Optional polish through an LLM: `chat(messages) -> str` (the shared LLM client's chat call).
    Returns a new record; the template text is kept in meta["template_question"]. A rewrite that is
    empty or names the answer is rejected and the record comes back unchanged."""
    out = chat([{"role": "user", "content": REWRITE_PROMPT.format(stem=rec["question"])}]).strip()
    answer = rec["options"][rec["answer"]]
    if not out or re.search(re.escape(answer), out, re.I):
        return rec
    meta = dict(rec["meta"], template_question=rec["question"], rewritten=True)
    return dict(rec, question=out, meta=meta)
