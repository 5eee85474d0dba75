"""kg/readers.py: each source reader on the real kg-sources files, and one clear error for bad input."""
import shutil

import pytest

from kg.readers import SourceError, hpo_term_type, parse_frequency, read_do, read_hsdn, read_wikidata, tsv


class Recorder:
    """Collects what a reader states, without merging (the Builder's job, tested in test_kg_build)."""

    def __init__(self):
        self.nodes, self.edges, self.same_as, self.aliases, self.by_name = {}, [], [], [], []

    def node(self, key, type, name, source, synonyms=(), rare=False):
        self.nodes.setdefault(key, (type, name))

    def edge(self, src, rel, dst, source, freq=None, attr=None, optional=False):
        self.edges.append((src, rel, dst, source))

    def same(self, a, b, source=None, check_names=False):
        self.same_as.append((a, b))

    def alias(self, a, key):
        self.aliases.append((a, key))

    def same_by_name(self, key):
        self.by_name.append(key)

    def name_hint(self, key, name):
        pass


def test_hpo_frequency_forms_from_the_real_file():
    # the forms phenotype.hpoa uses: HP frequency terms, n/m ratios and percentages
    assert parse_frequency("HP:0040281") == 0.9
    assert parse_frequency("1/2") == 0.5
    assert parse_frequency("12%") == pytest.approx(0.12)
    assert parse_frequency("") != parse_frequency("")  # nan: not given
    with pytest.raises(ValueError):
        parse_frequency("often")


def test_hpo_term_types():
    pa = {"HP:0000118"}
    assert hpo_term_type("Molar tooth sign on MRI", pa) == "imaging_finding"
    assert hpo_term_type("Increased circulating lactate concentration", pa) == "lab_finding"
    assert hpo_term_type("Hypokalemia", pa) == "lab_finding"
    assert hpo_term_type("Seizure", pa) == "phenotype"
    assert hpo_term_type("Autosomal recessive inheritance", {"HP:0000005"}) == "inheritance"
    assert hpo_term_type("Frequent", {"HP:0040279"}) is None


def test_do_reader_xrefs_and_axioms(shared):
    r = Recorder()
    read_do(str(shared / "kg-sources"), r)
    assert len([k for k in r.nodes if k.startswith("DOID:")]) == 12246  # MANIFEST: 12,246 distinct DOIDs
    # Graves disease: DOID:12361 carries exactly one OMIM id, so the two ids are one disease
    assert ("OMIM:275000", "DOID:12361") in r.same_as
    # chikungunya's axioms: has symptom fever, transmitted by Aedes
    chik = [(rel, d.value) for s, rel, d, _ in r.edges if s == "DOID:0050012" and not isinstance(d, str)]
    assert ("has_phenotype", "fever") in chik
    # inheritance axioms go to the inheritance relation, not caused_by
    rels = {rel for s, rel, d, _ in r.edges if not isinstance(d, str) and d.value == "autosomal recessive inheritance"}
    assert rels == {"inheritance"}


def test_hsdn_and_wikidata_slices(shared):
    r = Recorder()
    read_hsdn(str(shared / "kg-sources"), r, limit=50)
    assert len(r.edges) == 50 and all(s.startswith("DOID:") for s, *_ in r.edges)
    r = Recorder()
    read_wikidata(str(shared / "kg-sources"), r, limit=100)
    assert len(r.by_name) == 200  # 100 diseases + 100 medicines, each to be matched by label
    assert r.nodes["WD:Q170990"] == ("disease", "arthritis")
    treats = [s.value for s, rel, d, _ in r.edges if d == "WD:Q170990" and rel == "indicated_for"]
    assert "methotrexate" in treats


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(SourceError, match="hsdn/symptoms-DO.tsv: file not found"):
        read_hsdn(str(tmp_path), Recorder())


def test_short_row_names_file_and_line(shared, tmp_path):
    src = shared / "kg-sources" / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst = tmp_path / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst.parent.mkdir(parents=True)
    lines = src.read_text().splitlines(keepends=True)[:20]
    lines[6] = "\t".join(lines[6].split("\t")[:3]) + "\n"  # truncated row on line 7
    dst.write_text("".join(lines))
    with pytest.raises(SourceError, match=r"symptoms-DO.tsv:7: expected 8 tab-separated columns, got 3"):
        read_hsdn(str(tmp_path), Recorder())


def test_wrong_header_and_bad_json(shared, tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("a\tb\n1\t2\n")
    with pytest.raises(SourceError, match=r"x.tsv:1: expected a header"):
        list(tsv(str(p), ["id", "label"]))
    src = shared / "kg-sources" / "wikidata-medical" / "WikiDiseaseData.shared.jl"
    bad = tmp_path / "d.jl"
    lines = src.read_text().splitlines(keepends=True)[:5]
    lines[3] = lines[3][:40] + "\n"
    bad.write_text("".join(lines))
    with pytest.raises(SourceError, match=r"d.jl:4: not valid JSON"):
        read_wikidata(str(shared / "kg-sources"), Recorder(), limit=10, extra_diseases=[str(bad)])
