"""What a question may be asked about: the focus entities of each template (weighted toward rare ones), the
findings a vignette may state, the hallmark findings of a rare disease, and the trusted drug facts (indications,
targets, mechanism classes) that the templates walk. FocusPools holds the pools and findings and builds on
DrugFacts, which holds the drug facts; kg/sample.py's QuestionSampler draws on both.
"""
import re
from collections import defaultdict

import numpy as np

from kg.build import RELS, norm
from kg.check import HALLMARK_MAX, MOA_TYPES, Checker, content_words, family_key, shares_word

# modes asked about: AD, AR, X-linked recessive, X-linked dominant, mitochondrial. Digenic, Y-linked, somatic
# mosaicism... are rarely plausible and made the longest option a shortcut.
MODES = ["HP:0000006", "HP:0000007", "HP:0001419", "HP:0001423", "HP:0001427"]
# pharmacokinetic classes (what a drug does to other drugs' metabolism) are no answer to "what does it treat with"
PK_CLASS = re.compile(r"cytochrome p450|p-glycoprotein|organic (anion|cation) transport|breast cancer resistance|"
                      r"glucuronosyltransferase|\bugt\d", re.I)
PRENATAL_ONSET = re.compile(r"fetal|antenatal|embryonal|trimester", re.I)
GROUPING = re.compile(r"/|^abnormality of|abnormality$|^abnormal .*(morphology|physiology)$|^abnormal .* or ",
                      re.I)  # HPO headings ("Abnormal circulating enzyme concentration or activity")
ORGANISM = re.compile(r"^(\[?[A-Z][a-z]+\]? [a-z][a-z\-]+( subsp\. [a-z]+)?|\w*virus \w+|[A-Z][\w ]* virus( \d+)?)$")
NOT_REPORTED = re.compile(r"^abnormal|hyperemia", re.I)
HALLMARK_FREQ = 0.8  # HPO "very frequent" (80-99%) and "obligate" annotations
# a finding a drug's disease is asked for: at most this many diseases have it ("hypokinesia" points somewhere, "fever"
# and "fatigue" nowhere)
POINTING_MAX = 60
# findings too broad to tell two neuromuscular or respiratory diseases apart: never the answer or a distractor of a
# drug's disease ("neurodegeneration" is true of Parkinson disease though no source annotates it)
VAGUE = re.compile(r"^(neurodegeneration|generalized muscle weakness|emotional lability|muscle spasm|respiratory "
                   r"failure|fatigue|pain|drooling|depression|anxiety)$", re.I)
# drugs whose use the graph does not hold, so naming one points to no disease of the graph: penicillamine (Wilson
# disease, cystinuria), methamphetamine (ADHD); mefloquine and proguanil are given to healthy travellers as prophylaxis
NOT_POINTING = {"penicillamine", "methamphetamine", "mefloquine", "proguanil"}
# measurements of research physiology, not findings a clinician elicits or an examinee expects of a patient: obesity's
# "decreased resting energy expenditure" (obese patients have a raised absolute REE; kg/REVIEW.md, seed 818181)
NOT_A_SIGN = re.compile(r"energy expenditure|metabolic rate|oxygen consumption|insulin sensitivity|"
                        r"thermogenesis", re.I)
# transmitter families of drug classes: two classes of one family are alternatives to an examinee
FAMILIES = {"adrenergic": r"adrenergic|sympathomimetic|catecholamine",
            "cholinergic": r"cholinergic|muscarinic|nicotinic|cholinesterase", "dopaminergic": r"dopamin", "serotonergic": r"serotonin", "gabaergic": r"\bgaba|benzodiazepine|barbiturate",
            "histaminergic": r"histamin", "opioid": r"opioid", "corticosteroid": r"corticosteroid|glucocorticoid",
            "antipsychotic": r"antipsychotic|phenothiazine|butyrophenone",
            "antiparasitic": r"antiprotozoal|anthelmintic|antihelminthic|antimalarial"}
# families whose drugs often span several of the family's classes (nitazoxanide, an antiprotozoal, kills helminths
# too): a drug_mechanism distractor of the key's such family is a second defensible option
SPECTRUM = {"antiparasitic"}


def class_name(name):
    """A class name as FDA's two vocabularies may both spell it ('5-Lipoxygenase Inhibitor' / 'Inhibitors')."""
    return " ".join(w[:-1] if w.endswith("s") and len(w) > 3 else w for w in norm(name).split())


def class_families(name):
    return {f for f, pat in FAMILIES.items() if re.search(pat, name, re.I)}


# a parent whose whole subtree is this small groups variants of one condition (multiple carboxylase deficiency:
# biotinidase and holocarboxylase synthetase deficiency): its children are twin differentials
TWIN_MAX = 5
# a parent this small or smaller groups the drug's disease with its neighbours (bronchial disease: asthma, bronchitis)
NEIGHBOUR_MAX = 200


def per_node(method):
    """Cache a FocusPools or DrugFacts method that depends only on the graph and its arguments (a tuple comes back,
    so no caller can change the cached value): pools, findings and answers are asked for each draw, and sampling
    2,000 questions spent most of its time recomputing them. The result never depends on what was drawn before."""
    def cached(self, *args):
        key = (method.__name__,) + args
        if key not in self._memo:
            self._memo[key] = tuple(method(self, *args))
        return self._memo[key]
    cached.__name__, cached.__doc__ = method.__name__, method.__doc__
    return cached


class DrugFacts:
    """The trusted drug facts the templates walk: a drug's indications, named targets and mechanism classes, the
    classes that explain its use for a disease, the disease it points to, and the drugs that act like it (per node,
    cached: they depend only on the graph)."""
    def __init__(self, g, ck):
        self.g, self.ck, self._memo = g, ck, {}

    def drug_ok(self, x):
        """A drug option: a DrugBank drug (Wikidata's treatments include 'oxygen therapy' and synonyms of
        DrugBank drugs under another name)."""
        return self.g.type_name(x) == "drug" and bool(re.match(r"DB\d+$", self.g.ids[x]))

    @per_node
    def trusted_in(self, x, rel):
        """Subjects of x's incoming `rel` edges that a trusted edge states."""
        return [int(self.g.src[e]) for e in self.g.in_edges(x, rel) if self.ck.trusted(e)]

    def _drugs_for(self, d):
        return [x for x in self.trusted_in(d, "indicated_for") if self.drug_ok(x)]

    @per_node
    def _indications(self, drug):
        g = self.g
        return [int(g.dst[e]) for e in g.out_edges(drug, "indicated_for") if self.ck.trusted(e)]

    @per_node
    def _targets(self, drug):
        """Target edges of a drug whose gene has a symbol (a bacterial gene known only as "NCBIGene:908646"
        would put a raw id in the stem)."""
        return [e for e in self.g.out_edges(drug, "targets").tolist() if ":" not in self.g.names[self.g.dst[e]]]

    @per_node
    def _moa_classes(self, drug):
        g = self.g
        es = g.out_edges(drug, "in_class")
        return [int(g.dst[e]) for e in es if g.attrs[g.attr[e]] in MOA_TYPES and not PK_CLASS.search(g.names[g.dst[e]])]

    def _kin(self, drug):
        """What makes two drugs alternatives: their targets and mechanism classes."""
        return set(self.g.out(drug, "targets").tolist()) | set(self._moa_classes(drug))

    def class_nodes(self, name):
        """The drug_class nodes with this (normalised) name: FDA's EPC and MoA vocabularies each give one."""
        if "class_nodes" not in self._memo:
            by = defaultdict(list)
            for c in self.g.of_type("drug_class").tolist():
                by[class_name(self.g.names[c])].append(c)
            self._memo["class_nodes"] = by
        return self._memo["class_nodes"].get(class_name(name), [])

    @per_node
    def explaining_classes(self, drug, d):
        """The mechanism classes of drug that explain its use for d: one another trusted drug for d belongs to, or
        one whose drugs (most of them) act on a target another trusted drug for d acts on. Epinephrine is given in
        asthma as a beta-adrenergic agonist (ADRB2, as formoterol), not as an alpha-adrenergic agonist or an
        'Adrenergic Receptor Agonist' (dipivefrin, epinastine); benzatropine in Parkinson disease as an
        anticholinergic, not as an antihistamine. A drug with one class keeps it (riluzole, a benzothiazole); one
        whose classes all fail gives none (amantadine's influenza M2 inhibitor for Parkinson disease)."""
        g = self.g
        mine = self._moa_classes(drug)
        if len({class_name(g.names[c]) for c in mine}) <= 1:
            return mine
        others = [x for x in self._drugs_for(d) if x != drug]
        names = {class_name(g.names[c]) for x in others for c in self._moa_classes(x)}
        targets = {t for x in others for t in g.out(x, "targets").tolist()}
        out = []
        for c in mine:
            if class_name(g.names[c]) in names:
                out.append(c)
                continue
            members = {m for k in self.class_nodes(g.names[c]) for m in g.inn(k, "in_class").tolist()}
            acting = [set(g.out(m, "targets").tolist()) for m in members]
            acting = [t for t in acting if t]
            if any(2 * sum(t in a for a in acting) >= len(acting) for t in targets):
                out.append(c)
        return out

    @per_node
    def points_to(self, x):
        """(d,) when starting drug x points to disease d: its one trusted indication, and every indication any
        source gives lies in d's is_a line (riluzole, levodopa, salmeterol; not ibuprofen, whose rows name pain and
        osteoarthritis too, nor amphetamine, given for ADHD as well); () otherwise."""
        ind = self._indications(x)
        if len(ind) != 1 or self.g.names[x].lower() in NOT_POINTING:
            return []
        d = ind[0]
        line = {d} | self.ck.ancestors(d) | self.ck.descendants(d)
        return [d] if set(self.g.out(x, "indicated_for").tolist()) <= line else []

    @per_node
    def neighbour_uses(self, drug, d):
        """Content-word sets of the diseases a drug starting patients of d may be given for: the indications (any
        source) of drugs sharing a mechanism class with it, and d's siblings under a parent of at most NEIGHBOUR_MAX
        diseases. A finding naming one ('recurrent bronchitis' beside orciprenaline, a bronchodilator given in
        chronic bronchitis too; bronchitis and asthma are both bronchial diseases) is another use of the drug, not
        a clearly wrong option."""
        g, ck = self.g, self.ck
        near = set()
        for c in self._moa_classes(drug):
            for k in self.class_nodes(g.names[c]):
                for m in g.inn(k, "in_class").tolist():
                    near.update(g.out(m, "indicated_for").tolist())
        for p in g.out(d, "subclass_of").tolist():
            if len(ck.descendants(p)) <= NEIGHBOUR_MAX:
                near |= ck.descendants(p)
        near -= {d}
        return sorted({content_words(g.names[x]) for x in near if content_words(g.names[x])}, key=sorted)

    def known_for_targets(self, y):
        """A drug known for its named targets: one or two, or three subtypes of one receptor or channel family
        (carbamazepine on SCN4A/5A/9A, propantheline on CHRM1-3). Three of different families make a drug known for
        none of them: dextroamphetamine (DAT, NET, VMAT2) beside deserpidine, nefazodone (5-HT2A, SERT, NET) beside
        diethylpropion were 'same target' keys a pharmacologist rejects (kg/REVIEW.md, seed 929292)."""
        names = [self.g.names[self.g.dst[e]] for e in self._targets(y)]
        return 1 <= len(names) <= 2 or (len(names) == 3 and len({re.sub(r"\d+[A-Z]?$", "", t) for t in names}) == 1)

    @per_node
    def target_partners(self, x):
        """Drugs that act on a target of x the same way (both agonists, both inhibitors...), x and the partner
        each with at most 2 and 3 named targets (a drug with many is known for none of them) and a mechanism class."""
        g = self.g
        if not 1 <= len(self._targets(x)) <= 2 or not self._moa_classes(x):
            return []
        out = []
        for e in self._targets(x):
            t, action = int(g.dst[e]), g.attr[e]
            for k in g.in_edges(t, "targets").tolist():
                y = int(g.src[k])
                if (y != x and y not in out and g.attr[k] == action and self.drug_ok(y) and self._moa_classes(y)
                        and self.known_for_targets(y)):
                    out.append(y)
        return out


class FocusPools(DrugFacts):
    """Pools of focus entities for each template with their rarity weights, the disease findings a question may
    state, and the answers a focus admits (all per node, cached: they depend only on the graph)."""
    def __init__(self, g, alpha=1.0, rare_boost=8.0, min_findings=3, max_findings=6, only=None, max_share=0.005,
                 hallmark_max=HALLMARK_MAX):
        super().__init__(g, Checker(g))
        # a rare disease is recognisable from a finding most of its patients have and few other diseases share
        self.hallmark_max = hallmark_max
        # a vignette needs two findings that at most this share of annotated diseases have: "itch, rash and
        # fever" is unique only inside an incomplete graph
        self.specific = max(3, max_share * len(np.unique(g.src[g.rel == RELS.index("has_phenotype")])))
        # members of a numbered series ("intellectual developmental disorder 61", "spinocerebellar ataxia 36")
        # cannot be told apart from a vignette, nor can their genes or modes: never the focus of a question
        fam = defaultdict(list)
        for d in g.of_type("disease").tolist():
            k = family_key(g.names[d])
            if k and k != norm(g.names[d]):
                fam[k].append(d)
        self.series = {d for ms in fam.values() if len(ms) >= 3 for d in ms}
        self.only = None if only is None else set(only)  # restrict focus entities (e.g. the diseases of one file)
        self.alpha, self.rare_boost = alpha, rare_boost
        self.min_findings, self.max_findings = min_findings, max_findings
        self.modes = [g.index[m] for m in MODES if m in g.index]
        self._pools = {}

    # ---- pools of focus entities and rarity weights
    @per_node
    def usable_findings(self, d):
        """Findings of a disease that a vignette may state: HPO terms (not MeSH headings), on a trusted edge,
        not rare in the disease, sharing no word with its name ("elevated PTH" for hyperparathyroidism)."""
        g = self.g
        es = g.out_edges(d, "has_phenotype")
        f = g.freq[es]
        keep = np.isnan(f) | (f >= 0.3)
        return [int(g.dst[e]) for e in es[keep] if g.ids[g.dst[e]].startswith("HP:") and self.ck.trusted(e)
                and not GROUPING.search(g.names[g.dst[e]]) and not shares_word(g.names[g.dst[e]], g.names[d])]

    @per_node
    def hallmarks(self, d):
        """Usable findings that characterise d: annotated in at least 80% of its patients (HPO's very frequent
        and obligate) and found in at most hallmark_max diseases of the graph. Without one, a vignette of
        findings that are unique only in combination names nothing a clinician ties to the disease."""
        g = self.g
        freq = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        return [p for p in self.usable_findings(d) if freq[p] >= HALLMARK_FREQ
                and len(self.ck.subjects("has_phenotype", p)) <= self.hallmark_max]

    def established(self, d):
        """A disease with a known gene, or one the Disease Ontology or OMIM names too. An Orphanet-only entity
        without a gene is a clinical grouping (radiation proctitis, hydatidiform mole, TEMPI syndrome) whose
        defining setting (an exposure, a pregnancy) no HPO term states, or a syndrome described once."""
        g = self.g
        names = [g.ids[d]] + g.xrefs.get(g.ids[d], [])
        return any(k.startswith(("DOID:", "OMIM:")) for k in names) or bool(self.answers_of("diagnosis_gene", d))

    def modes_of(self, d):
        return set(self.g.out(d, "inheritance").tolist()) & set(self.modes)

    def pool(self, template):
        if template not in self._pools:
            g = self.g
            need = {"diagnosis": (), "diagnosis_gene": ("associated_gene",), "diagnosis_inheritance": ("inheritance",),
                    "diagnosis_treatment": ("indicated_for",), "treatment_class": ("indicated_for",),
                    "diagnosis_drug_target": ("indicated_for",), "diagnosis_cause": ("caused_by",),
                    "diagnosis_test": ("test",)}
            if template in need:
                nodes = []
                for d in g.of_type("disease").tolist():
                    if d in self.series or len(self.usable_findings(d)) < self.min_findings:
                        continue
                    rels = need[template]
                    if "indicated_for" not in rels and not (self.hallmarks(d) and self.established(d)):
                        continue  # a rare-disease question (the drug templates' diseases are common, frequency-less)
                    if "indicated_for" in rels and not any(self.drug_ok(x) for x in self.trusted_in(d, "indicated_for")):
                        continue
                    if "associated_gene" in rels and len(self.answers_of("diagnosis_gene", d)) != 1:
                        continue  # with several genes the asked one may be a minor or candidate gene
                    if "caused_by" in rels and not any(self.is_organism(x) for x in g.out(d, "caused_by").tolist()):
                        continue
                    if "test" in rels and not self.tests_of(d):
                        continue
                    if "inheritance" in rels and len(self.modes_of(d)) != 1:
                        continue  # a disease given two modes has two right answers
                    if template == "treatment_class" and not any(self.explaining_classes(x, d) for x in self.trusted_in(d, "indicated_for")
                                                                 if self.drug_ok(x)):
                        continue
                    nodes.append(d)
            elif template == "drug_mechanism":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self._moa_classes(x)]
            elif template == "drug_for_disease_target":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self._targets(x)
                         and self._indications(x)]
            elif template == "drug_finding":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self.points_to(x)
                         and self.pointing_findings(self.points_to(x)[0])]
            elif template == "shared_target":
                nodes = [x for x in g.of_type("drug").tolist() if self.drug_ok(x) and self.target_partners(x)]
            elif template == "side_effect":
                nodes = [x for x in g.of_type("drug").tolist() if len(g.out(x, "side_effect")) >= 3
                         and len(g.out(x, "indicated_for")) + len(g.out(x, "in_class"))]
            else:
                raise ValueError(f"unknown template {template!r}")
            if self.only is not None:
                nodes = [x for x in nodes if x in self.only]
            nodes = np.array(nodes, dtype=np.int64)
            w = self.weights(nodes)
            if template == "diagnosis_inheritance" and len(nodes):  # each mode the answer equally often
                mode = np.array([min(self.modes_of(d)) for d in nodes.tolist()])
                for m in set(mode.tolist()):
                    w[mode == m] /= w[mode == m].sum()
                w /= w.sum()
            self._pools[template] = (nodes, w)
        return self._pools[template]

    def weights(self, nodes):
        if not len(nodes):
            return np.zeros(0)
        w = (self.g.degree[nodes].astype(np.float64) + 1) ** -self.alpha
        w *= np.where(self.g.rare[nodes], self.rare_boost, 1.0)
        return w / w.sum()

    def is_organism(self, x):
        """A named pathogen ("Streptococcus pneumoniae", "Alphavirus chikungunya"), not a broad group such as
        "Bacteria" (which would be a correct answer too) or a route ("airborne transmission")."""
        return self.g.type_name(x) == "agent" and bool(ORGANISM.match(self.g.names[x]))

    @per_node
    def tests_of(self, d):
        """Laboratory and imaging findings of d that a test in most of its patients shows (HPO frequency >= 80%)
        and that at most `specific` diseases share: the result the examinee should expect."""
        g = self.g
        freq = {int(g.dst[e]): g.freq[e] for e in g.out_edges(d, "has_phenotype")}
        return [p for p in self.usable_findings(d) if g.type_name(p) != "phenotype" and freq[p] >= HALLMARK_FREQ
                and len(self.ck.subjects("has_phenotype", p)) <= self.specific and self.reportable(p)]

    def reportable(self, p):
        """A result a report states: a direction or a named finding, not an HPO heading ('Abnormal circulating
        porphyrin concentration') or an examination sign filed as a lab finding ('conjunctival hyperemia')."""
        return not NOT_REPORTED.search(self.g.names[p])

    @per_node
    def answers_of(self, template, x):
        """The entities a question of this template drawn on focus x could ask for."""
        g = self.g
        if template in ("diagnosis", "drug_for_disease_target"):
            return [x]
        if template == "diagnosis_gene":
            return [int(g.dst[e]) for e in g.out_edges(x, "associated_gene") if self.ck.trusted(e)]
        if template == "diagnosis_treatment":
            return [d for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d)]
        if template == "diagnosis_cause":
            return [c for c in g.out(x, "caused_by").tolist() if self.is_organism(c)]
        if template == "treatment_class":
            return [c for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d) for c in self.explaining_classes(d, x)]
        if template == "diagnosis_drug_target":
            return [int(g.dst[e]) for d in self.trusted_in(x, "indicated_for") if self.drug_ok(d)
                    and 1 <= len(self._targets(d)) <= 3 for e in self._targets(d)]
        if template == "diagnosis_test":
            return self.tests_of(x)
        if template == "drug_mechanism":
            return self._moa_classes(x)
        if template == "drug_finding":
            return self.pointing_findings(self.points_to(x)[0]) if self.points_to(x) else []
        if template == "shared_target":
            return self.target_partners(x)
        return g.out(x, "side_effect").tolist()

    @per_node
    def pointing_findings(self, d):
        """Usable findings of d that point somewhere (at most POINTING_MAX diseases have them)."""
        return [p for p in self.usable_findings(d) if len(self.ck.subjects("has_phenotype", p)) <= POINTING_MAX
                and self.reportable(p) and not VAGUE.search(self.g.names[p]) and not NOT_A_SIGN.search(self.g.names[p])]

    @per_node
    def close_parents(self, d):
        """Parents of d (or of a disease of the same name from another source: Orphanet's holocarboxylase
        synthetase deficiency and the Disease Ontology's) whose subtree has at most TWIN_MAX diseases."""
        g, ck = self.g, self.ck
        if "disease_names" not in self._memo:
            by = defaultdict(list)
            for x in g.of_type("disease").tolist():
                by[norm(g.names[x])].append(x)
            self._memo["disease_names"] = by
        out = set()
        for x in self._memo["disease_names"].get(norm(g.names[d]), [d]):
            out |= {p for p in ck.ancestors(x) if p != x and len(ck.descendants(p)) <= TWIN_MAX}
        return sorted(out)

    def twins(self, a, b):
        """Two diseases under one small parent (biotinidase and holocarboxylase synthetase deficiency, both multiple
        carboxylase deficiencies): a stem of three findings rarely tells them apart, the graph's annotations do."""
        return bool(set(self.close_parents(a)) & set(self.close_parents(b)))
