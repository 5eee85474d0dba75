"""One small reader per knowledge source. Each reader takes the kg-sources root and a Builder
(kg/build.py) and states what the source says: nodes (with ids, names, synonyms), edges (with
provenance) and cross-references. Merging, name matching and storage are the Builder's job.

Endpoints are either a plain id the source itself defines ("HP:0001250", "DB00619") or a Ref that
the Builder resolves after every reader has run: Ref("id", "UMLS:C0002871", ...) through xrefs, or
Ref("name", "fever", ...) through the name index (Wikidata and DO axioms carry labels only).

To add a source (e.g. a Wikipedia infobox dump: one JSON object per article with "title" and
infobox fields such as "symptoms", "causes", "treatment", "medication"), write one more
read_X(root, b) in the style of read_wikidata and add it to READERS.
"""
import gzip
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass


class SourceError(Exception):
    """A missing or malformed source file; the message names the file (and line)."""


@dataclass(frozen=True)
class Ref:
    kind: str        # "id" (resolved through xrefs/aliases) or "name" (through the name index)
    value: str
    types: tuple     # acceptable node types, best first
    fallback: str = None  # type of the node to create when nothing matches (None: drop the edge)
    label: str = None     # an id Ref's display name: tried in the name index, and names a created node


# ---------------------------------------------------------------- file helpers

def _need(path):
    if not os.path.isfile(path):
        raise SourceError(f"{path}: file not found (see kg-sources/README.md for the expected layout)")
    return path


def lines(path, gz=False):
    """Yield (lineno, text line) decoded as UTF-8 line by line, so a bad byte is reported at its line."""
    with (gzip.open if gz else open)(_need(path), "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SourceError(f"{path}:{lineno}: not valid UTF-8 (byte {raw[e.start]:#04x} at column "
                                  f"{e.start + 1})") from None


def manifest_sums(folder):
    """{file path relative to folder: sha256} from the folder's MANIFEST.md tables (empty without one)."""
    path = os.path.join(folder, "MANIFEST.md")
    if not os.path.isfile(path):
        return {}
    sums = {}
    for _, line in lines(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        sha = next((c for c in cells[1:] if re.fullmatch(r"[0-9a-f]{64}", c)), None)
        if line.startswith("|") and sha:
            sums[cells[0].strip("`")] = sha
    return sums


def verify(root, files):
    """Fail on a source file that differs from the sha256 its folder's MANIFEST.md gives (a copy cut at a
    line boundary parses cleanly and would silently build a smaller graph). Returns the files that no
    MANIFEST covers, which the readers' own row checks are left to guard."""
    unchecked, sums = [], {}
    for rel in files:
        folder, name = rel.split("/", 1)
        if folder not in sums:
            sums[folder] = manifest_sums(os.path.join(root, folder))
        want = sums[folder].get(name)
        if want is None:
            unchecked.append(rel)
            continue
        h = hashlib.sha256()
        with open(_need(os.path.join(root, rel)), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != want:
            raise SourceError(f"{os.path.join(root, rel)}: sha256 {h.hexdigest()[:12]}... differs from "
                              f"{folder}/MANIFEST.md ({want[:12]}...): a truncated or modified copy")
    return unchecked


def tsv(path, header, limit=None, comment=None, gz=False, unquote=False):
    """Yield (lineno, columns) for each data row. `header` is the list of leading column names
    the first non-comment line must carry (None: the file has no header). A short row raises
    SourceError naming file:line. `limit` caps the data rows read (tests use slices)."""
    ncols = len(header) if header else 1
    seen_header = header is None
    n = 0
    for lineno, line in lines(path, gz):
        if comment and line.startswith(comment):
            continue
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            continue
        cols = line.split("\t")
        if unquote:
            cols = [c.strip('"') for c in cols]
        if not seen_header:
            if [c.strip().lower() for c in cols[:ncols]] != [h.lower() for h in header]:
                raise SourceError(f"{path}:{lineno}: expected a header starting {header}, got {cols[:ncols]}")
            seen_header = True
            continue
        if len(cols) < ncols:
            raise SourceError(f"{path}:{lineno}: expected {ncols} tab-separated columns, got {len(cols)}")
        yield lineno, cols
        n += 1
        if limit is not None and n >= limit:
            return
    if not seen_header:
        raise SourceError(f"{path}: empty file (no header line)")


def obo_terms(path):
    """Yield (lineno, {tag: [values]}) for each [Term] stanza of an OBO file."""
    term, start = None, 0
    for lineno, line in lines(path):
        line = line.rstrip("\n")
        if line.startswith("["):
            if term is not None:
                yield start, term
            term, start = ({} if line == "[Term]" else None), lineno
        elif term is not None and line and not line.startswith("!"):
            tag, sep, val = line.partition(": ")
            if not sep:
                raise SourceError(f"{path}:{lineno}: expected 'tag: value', got {line[:60]!r}")
            term.setdefault(tag, []).append(val.split(" ! ")[0].strip())
    if term is not None:
        yield start, term


def _obo_synonyms(term):
    out = []
    for s in term.get("synonym", []):
        m = re.match(r'"(.*)" (EXACT|NARROW|BROAD|RELATED)', s)
        if m and m.group(2) == "EXACT":
            out.append(m.group(1))
    return out


# ---------------------------------------------------------------- HPO

HPO_FREQ = {"HP:0040280": 1.0, "HP:0040281": 0.9, "HP:0040282": 0.55, "HP:0040283": 0.17,
            "HP:0040284": 0.025, "HP:0040285": 0.0}
IMAGING = re.compile(r"\b(MRI|CT|computed tomography|radiograph\w*|ultraso\w+|sonograph\w*|echocardiogra\w*|"
                     r"imaging|x-ray|angiogra\w*|scintigra\w*|PET|roentgenogra\w*|fundoscop\w*)\b", re.I)
# "urinary" alone is a symptom (urinary incontinence, urgency); a lab finding names what urine contains
LAB = re.compile(r"(concentration|\bcirculating\b|\blevels?\b|\bactivity\b|\bcount\b|\btiters?\b|\bserum\b|\bplasma\b|"
                 r"\b(protein|hemat|glycos|album|amino ?acid|calci|phosphat|oxal|cystin|hemoglobin|myoglobin|ket|"
                 r"bilirubin)uria\b|aciduria|emia\b|penia\b|cytosis\b|\bEEG\b|electroencephalogra|"
                 r"\bECG\b|electrocardiogra|nerve conduction|electromyogra|\bEMG\b|biopsy)", re.I)


def hpo_term_type(name, roots):
    if "HP:0000005" in roots:
        return "inheritance"
    if "HP:0003674" in roots:
        return "onset"
    if "HP:0000118" not in roots:
        return None  # clinical modifiers, frequency terms, ...: not entities of the graph
    if IMAGING.search(name):
        return "imaging_finding"
    if LAB.search(name):
        return "lab_finding"
    return "phenotype"


def parse_frequency(raw):
    """HPO frequency as a fraction: an HP frequency term, 'n/m' or 'x%'; nan when not given."""
    if not raw:
        return math.nan
    if raw in HPO_FREQ:
        return HPO_FREQ[raw]
    if raw.endswith("%"):
        return float(raw[:-1]) / 100
    if "/" in raw:
        n, m = raw.split("/")
        return int(n) / int(m) if int(m) else math.nan
    raise ValueError(f"unknown frequency {raw!r}")


MAX_UNKNOWN = 0.01  # the 2025-01-16 release has none; a few are normal when the files are a day apart


def read_hpo(root, b, limit=None, diseases=None):
    """hp.obo terms + phenotype.hpoa annotations + genes_to_phenotype disease->gene.
    `diseases` (a set of OMIM:/ORPHA: ids) restricts the annotations read, for small test graphs."""
    d = os.path.join(root, "hpo")
    path = os.path.join(d, "hp.obo")
    terms, parents, alt = {}, {}, {}
    for lineno, t in obo_terms(path):
        if "id" not in t or "name" not in t:
            raise SourceError(f"{path}:{lineno}: [Term] without id or name")
        if t.get("is_obsolete") == ["true"]:
            continue
        tid = t["id"][0]
        terms[tid] = t
        parents[tid] = t.get("is_a", [])
        for a in t.get("alt_id", []):
            alt[a] = tid
    roots_of = {}

    def roots(tid):  # the set of ancestors of a term (memoized, iterative-safe depth here is < 20)
        if tid not in roots_of:
            s = {tid}
            for p in parents.get(tid, []):
                s |= roots(p)
            roots_of[tid] = s
        return roots_of[tid]

    keep = {}
    for tid, t in terms.items():
        typ = hpo_term_type(t["name"][0], roots(tid))
        if typ is None:
            continue
        keep[tid] = typ
        b.node(tid, typ, t["name"][0], "hpo", synonyms=_obo_synonyms(t))
        for x in t.get("xref", []):
            if x.startswith("UMLS:"):
                b.alias(x, tid)
    for tid in keep:
        for p in parents[tid]:
            if p in keep:
                b.edge(tid, "subclass_of", p, "hpo")

    path = os.path.join(d, "phenotype.hpoa")
    cols = ["database_id", "disease_name", "qualifier", "hpo_id", "reference", "evidence", "onset",
            "frequency", "sex", "modifier", "aspect"]
    named, rows, unknown = set(), 0, 0
    for lineno, c in tsv(path, cols, limit=limit, comment="#"):
        dis, name, qual, hp, freq, aspect = c[0], c[1], c[2], c[3], c[7], c[10]
        if diseases is not None and dis not in diseases:
            continue
        if not re.match(r"^(OMIM|ORPHA|DECIPHER):\d+$", dis) or not hp.startswith("HP:"):
            raise SourceError(f"{path}:{lineno}: bad disease id {dis!r} or HPO id {hp!r}")
        if dis not in named:  # Orphanet lists rare diseases only; an OMIM entry may be a form of a common one
            b.node(dis, "disease", name, "hpo", rare=dis.startswith("ORPHA:"))
            named.add(dis)
        hp = alt.get(hp, hp)
        rows += 1
        unknown += hp not in terms
        typ = keep.get(hp)
        if qual == "NOT" or typ is None:
            continue
        try:
            f = parse_frequency(freq)
        except (ValueError, ZeroDivisionError):
            raise SourceError(f"{path}:{lineno}: bad frequency {freq!r}") from None
        if f == 0.0:
            continue  # HP:0040285 "Excluded" is a negative annotation
        rel = {"inheritance": "inheritance", "onset": "onset"}.get(typ, "has_phenotype")
        b.edge(dis, rel, hp, "hpo", freq=f)
    if unknown > max(10, MAX_UNKNOWN * rows):
        raise SourceError(f"{path}: {unknown:,} of {rows:,} annotations name HPO ids missing from {d}/hp.obo "
                          f"(more than {MAX_UNKNOWN:.0%}): hp.obo is truncated or from another release")

    path = os.path.join(d, "genes_to_phenotype.txt")
    cols = ["ncbi_gene_id", "gene_symbol", "hpo_id", "hpo_name", "frequency", "disease_id"]
    seen = set()
    for lineno, c in tsv(path, cols, limit=limit):
        gene, sym, dis = c[0], c[1], c[5]
        if diseases is not None and dis not in diseases:
            continue
        if not gene.isdigit():
            raise SourceError(f"{path}:{lineno}: bad NCBI gene id {gene!r}")
        if (gene, dis) in seen:
            continue
        seen.add((gene, dis))
        b.node(f"NCBIGene:{gene}", "gene", sym, "hpo")
        b.edge(dis, "associated_gene", f"NCBIGene:{gene}", "hpo")


# ---------------------------------------------------------------- Disease Ontology

XREF_PREFIX = {"MIM": "OMIM", "ORDO": "ORPHA", "MESH": "MESH", "UMLS_CUI": "UMLS"}
AXIOM = re.compile(r"'(has material basis in|has symptom|disease has location|transmitted by|has phenotype)' "
                   r"some ('[^']+'|[\w\-]+)")
AXIOM_REL = {"has symptom": "has_phenotype", "has phenotype": "has_phenotype", "disease has location": "located_in",
             "transmitted by": "transmitted_by", "has material basis in": "caused_by"}


def read_do(root, b, limit=None):
    d = os.path.join(root, "disease-ontology")
    path = os.path.join(d, "HumanDO.tsv")
    label_to_id, child_parent, doids = {}, [], set()
    for lineno, c in tsv(path, ["id", "label", "subClassOf"], limit=limit, unquote=True):
        if not c[0].startswith("DOID:"):
            raise SourceError(f"{path}:{lineno}: bad DOID {c[0]!r}")
        b.node(c[0], "disease", c[1], "do")
        label_to_id.setdefault(c[1], c[0])
        doids.add(c[0])
        if len(c) > 2 and c[2]:
            child_parent.append((c[0], c[2]))
    for child, parent_label in child_parent:  # HumanDO.tsv names the parent by label
        if parent_label in label_to_id:
            b.edge(child, "subclass_of", label_to_id[parent_label], "do")

    path = os.path.join(d, "DO_rare_slim.obo")
    for lineno, t in obo_terms(path):
        if "id" in t and t["id"][0] in doids:
            b.node(t["id"][0], "disease", t["name"][0], "do", synonyms=_obo_synonyms(t), rare=True)

    # xrefs: a foreign id that names exactly one DOID, and is that DOID's only id of its kind,
    # is the same disease (merged); a DOID with several OMIM ids is the parent of each of them.
    path = os.path.join(d, "allXREFinDO.tsv")
    by_x, by_d = {}, {}
    for lineno, c in tsv(path, ["id", "label", "xref"], limit=limit, unquote=True):
        pre, _, val = c[2].partition(":")
        if pre not in XREF_PREFIX:
            continue
        x = f"{XREF_PREFIX[pre]}:{val}"
        by_x.setdefault(x, set()).add(c[0])
        by_d.setdefault((c[0], pre), set()).add(x)
    for x, ds in by_x.items():
        if len(ds) != 1:
            continue
        doid = next(iter(ds))
        pre = x.split(":")[0]
        if pre == "UMLS" or pre == "MESH":
            b.alias(x, doid)  # joins SIDER (UMLS) and HSDN/MeSH-keyed items, never merges nodes
        elif len(by_d[(doid, {"OMIM": "MIM", "ORPHA": "ORDO"}[pre])]) == 1:
            b.same(x, doid, "do", check_names=True)
        else:
            b.edge(x, "subclass_of", doid, "do", optional=True)

    path = os.path.join(d, "DO-subClassOf-anonymous.tsv")
    for lineno, c in tsv(path, ["ID", "LABEL", "SubClass Of [ANON]"], limit=limit):
        for part in c[2].split("|"):
            if " or " in part:
                continue  # a disjunction states no definite fact
            for rel, obj in AXIOM.findall(part):
                obj = obj.strip("'")
                r = AXIOM_REL[rel]
                if r == "caused_by" and obj.endswith("inheritance"):
                    b.edge(c[0], "inheritance", Ref("name", obj, ("inheritance",)), "do")
                elif r == "has_phenotype":
                    b.edge(c[0], r, Ref("name", obj, ("phenotype", "lab_finding", "imaging_finding"), "phenotype"), "do")
                elif r == "located_in":
                    b.edge(c[0], r, Ref("name", obj, ("anatomy",), "anatomy"), "do")
                else:
                    b.edge(c[0], r, Ref("name", obj, ("agent", "gene"), "agent"), "do")


# ---------------------------------------------------------------- DrugCentral (+ Hetionet names)

def read_drugcentral(root, b, limit=None):
    d = os.path.join(root, "hetionet-upstream")
    path = os.path.join(d, "hetionet", "hetionet-v1.0-nodes.tsv")
    for lineno, c in tsv(path, ["id", "name", "kind"], limit=limit):
        kind, _, ident = c[0].partition("::")
        if kind == "Gene":
            b.name_hint(f"NCBIGene:{ident}", c[1])  # gene symbols for DrugCentral targets not in HPO
        elif kind == "Anatomy":
            b.node(ident, "anatomy", c[1], "hetionet")

    path = os.path.join(d, "drugcentral", "indications.tsv")
    for lineno, c in tsv(path, ["doid_id", "drugbank_id", "disease", "drug", "category"], limit=limit):
        doid, db, dis, drug = c[:4]
        cat = c[4] if len(c) > 4 else ""
        if not doid.startswith("DOID:") or not db.startswith("DB"):
            raise SourceError(f"{path}:{lineno}: bad DOID {doid!r} or DrugBank id {db!r}")
        if cat == "NOT":
            continue  # listed as "not an indication"
        b.node(db, "drug", drug, "drugcentral")
        b.node(doid, "disease", dis, "drugcentral")
        b.edge(db, "indicated_for", doid, "drugcentral", attr=cat or None)

    path = os.path.join(d, "drugcentral", "targets.tsv")
    for lineno, c in tsv(path, ["GeneID", "drugbank_id", "drugbank_name", "pubmed_ids", "sources", "actions"],
                         limit=limit):
        if not c[0].isdigit():
            raise SourceError(f"{path}:{lineno}: bad gene id {c[0]!r}")
        b.node(c[1], "drug", c[2], "drugcentral")
        b.node(f"NCBIGene:{c[0]}", "gene", None, "drugcentral")
        b.edge(c[1], "targets", f"NCBIGene:{c[0]}", "drugcentral", attr=c[5] or None)

    path = os.path.join(d, "drugcentral", "classes.tsv")
    ctype = {}
    for lineno, c in tsv(path, ["class_id", "class_name", "class_source", "class_type"], limit=limit):
        ctype[c[0]] = c[3]
        b.node(c[0], "drug_class", c[1], "drugcentral")
    path = os.path.join(d, "drugcentral", "drug-to-class.tsv")
    for lineno, c in tsv(path, ["drugbank_id", "drugbank_name", "class_id", "class_name"], limit=limit):
        b.node(c[0], "drug", c[1], "drugcentral")
        b.node(c[2], "drug_class", c[3], "drugcentral")
        b.edge(c[0], "in_class", c[2], "drugcentral", attr=ctype.get(c[2]))


# ---------------------------------------------------------------- SIDER (CC BY-NC-SA: opt-in only)

def read_sider(root, b, limit=None):
    d = os.path.join(root, "hetionet-upstream", "sider4")
    path = os.path.join(d, "indications.tsv")
    cols = ["drugbank_id", "drugbank_name", "pubchem_id", "stitch_id_flat", "umls_cui_from_label", "method",
            "concept_name", "meddra_type", "umls_cui_from_meddra", "meddra_name"]
    stitch = {}
    for lineno, c in tsv(path, cols, limit=limit):
        db, name, st, cui, mname = c[0], c[1], c[3], c[8], c[9]
        stitch[st] = db
        b.node(db, "drug", name, "sider")
        if c[7] == "PT" and cui and c[5] == "NLP_indication":  # preconditions and bare mentions are not indications
            b.edge(db, "indicated_for", Ref("id", f"UMLS:{cui}", ("disease",), "disease", mname), "sider")
    path = os.path.join(d, "meddra_all_se.tsv.gz")
    for lineno, c in tsv(path, None, limit=limit, gz=True):
        if len(c) < 6:
            raise SourceError(f"{path}:{lineno}: expected 6 tab-separated columns, got {len(c)}")
        if c[3] != "PT" or c[0] not in stitch:
            continue
        b.edge(stitch[c[0]], "side_effect",
               Ref("id", f"UMLS:{c[4]}", ("phenotype", "lab_finding", "imaging_finding"), "phenotype", c[5]), "sider")


# ---------------------------------------------------------------- HSDN

def read_hsdn(root, b, limit=None):
    path = os.path.join(root, "hetionet-upstream", "hsdn", "symptoms-DO.tsv")
    cols = ["symptom_name", "disease_name", "cooccurs", "tfidf_score", "disease_id", "symptom_id", "doid_code",
            "doid_name"]
    for lineno, c in tsv(path, cols, limit=limit):
        sym, doid, dname = c[0], c[6], c[7]
        if not doid.startswith("DOID:"):
            raise SourceError(f"{path}:{lineno}: bad DOID {doid!r}")
        b.node(doid, "disease", dname, "hsdn")
        b.edge(doid, "has_phenotype", Ref("name", sym, ("phenotype", "lab_finding", "imaging_finding"), "phenotype"),
               "hsdn")


# ---------------------------------------------------------------- Wikidata-style JSON lines

def jsonl(path, limit=None):
    n = 0
    for lineno, line in lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise SourceError(f"{path}:{lineno}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, obj
        n += 1
        if limit is not None and n >= limit:
            return


def _qid(path, lineno, uri):
    m = re.search(r"(Q\d+)$", uri or "")
    if not m:
        raise SourceError(f"{path}:{lineno}: bad Wikidata URI {uri!r}")
    return f"WD:{m.group(1)}"


def read_wikidata(root, b, limit=None, extra_diseases=()):
    """Diseases (treatments, symptoms, causes) and medicines (conditions treated), labels only.
    `extra_diseases`: more files in the disease schema, read after (and in addition to) the shared one."""
    d = os.path.join(root, "wikidata-medical")
    for path in [os.path.join(d, "WikiDiseaseData.shared.jl"), *extra_diseases]:
        _read_wikidata_diseases(path, b, limit)
    path = os.path.join(d, "WikiMedicineData.shared.jl")
    for lineno, o in jsonl(path, limit):
        if "Medicine" not in o or "MedicineURI" not in o:
            raise SourceError(f"{path}:{lineno}: record lacks 'Medicine' or 'MedicineURI'")
        key = _qid(path, lineno, o["MedicineURI"])
        b.node(key, "drug", o["Medicine"], "wikidata")
        b.same_by_name(key)
        for cond in o.get("ConditionsTreated") or []:
            b.edge(key, "indicated_for", Ref("name", cond, ("disease",), "disease"), "wikidata")


def _read_wikidata_diseases(path, b, limit):
    finding = ("phenotype", "lab_finding", "imaging_finding")
    for lineno, o in jsonl(path, limit):
        if "Disease" not in o or "DiseaseURI" not in o:
            raise SourceError(f"{path}:{lineno}: record lacks 'Disease' or 'DiseaseURI'")
        key = _qid(path, lineno, o["DiseaseURI"])
        b.node(key, "disease", o["Disease"], "wikidata")
        b.same_by_name(key)
        for drug in o.get("TreatmentDrugs") or []:
            b.edge(Ref("name", drug, ("drug",), "drug"), "indicated_for", key, "wikidata")
        for s in (o.get("Symptons") or o.get("Symptoms") or []):
            b.edge(key, "has_phenotype", Ref("name", s, finding, "phenotype"), "wikidata")
        for cause in o.get("Cause") or []:
            b.edge(key, "caused_by", Ref("name", cause, ("agent", "disease", "gene"), "agent"), "wikidata")


READERS = {"hpo": read_hpo, "do": read_do, "drugcentral": read_drugcentral, "sider": read_sider,
           "hsdn": read_hsdn, "wikidata": read_wikidata}
NONCOMMERCIAL = {"sider"}  # CC BY-NC-SA: only read when the user names it
FILES = {  # what each reader reads, for the checksum check against each folder's MANIFEST.md
    "hpo": ["hpo/hp.obo", "hpo/phenotype.hpoa", "hpo/genes_to_phenotype.txt"],
    "do": ["disease-ontology/HumanDO.tsv", "disease-ontology/DO_rare_slim.obo", "disease-ontology/allXREFinDO.tsv",
           "disease-ontology/DO-subClassOf-anonymous.tsv"],
    "drugcentral": ["hetionet-upstream/hetionet/hetionet-v1.0-nodes.tsv", "hetionet-upstream/drugcentral/indications.tsv",
                    "hetionet-upstream/drugcentral/targets.tsv", "hetionet-upstream/drugcentral/classes.tsv",
                    "hetionet-upstream/drugcentral/drug-to-class.tsv"],
    "sider": ["hetionet-upstream/sider4/indications.tsv", "hetionet-upstream/sider4/meddra_all_se.tsv.gz"],
    "hsdn": ["hetionet-upstream/hsdn/symptoms-DO.tsv"],
    "wikidata": ["wikidata-medical/WikiDiseaseData.shared.jl", "wikidata-medical/WikiMedicineData.shared.jl"]}
