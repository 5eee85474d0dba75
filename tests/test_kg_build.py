"""kg/build.py: merging across sources, provenance, compact storage, CLI errors; one slow full build."""
import json
import os
import time

import numpy as np
import pytest

from kg.build import RELS, SOURCES, Graph, build, display, main, norm
from kg.readers import SourceError

# a few real HPO diseases: Graves disease (OMIM), ALS (Orphanet), Tourette syndrome (OMIM), Marfan (both)
DISEASES = {"OMIM:275000", "ORPHA:803", "OMIM:137580", "OMIM:154700", "ORPHA:558"}


@pytest.fixture(scope="module")
def small(shared):
    return build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral", "hsdn", "wikidata"], hpo_diseases=DISEASES)



def usage_error(capsys, argv):
    """main(argv) must stop with exit code 2 and one line on stderr (a bad source file is bad input); returns that
    line. (These were SystemExit(message): exit code 1.)"""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("kg.build: error: ") and err.count("\n") == 1, err
    return err

def test_names():
    assert norm("Alzheimer's disease") == norm("alzheimer\u2019s  Disease") == "alzheimers disease"
    assert display("ACROPECTOROVERTEBRAL DYSPLASIA, F-FORM OF") == "Acropectorovertebral dysplasia, f-form of"
    assert display("Graves  disease ") == "Graves disease"


def test_hpo_disease_merged_with_doid_and_drugcentral(small):
    g = small
    d = g.index["OMIM:275000"]
    assert g.ids[d] == "DOID:12361" and g.index["DOID:12361"] == d
    hpo = [e for e in g.out_edges(d, "has_phenotype") if "hpo" in g.provenance(e)]
    assert len(hpo) > 10
    drugs = {g.names[g.src[e]] for e in g.in_edges(d, "indicated_for") if "drugcentral" in g.provenance(e)}
    assert "Carbimazole" in drugs
    # the drug's mechanism hop: carbimazole inhibits thyroid peroxidase (TPO)
    carb = g.index["DB00389"]
    e = g.find_edge(carb, "targets", g.index["NCBIGene:7173"])
    assert e is not None and g.attrs[g.attr[e]] == "inhibitor" and g.names[g.index["NCBIGene:7173"]] == "TPO"


def test_every_edge_has_provenance_and_valid_types(small):
    g = small
    assert (g.prov > 0).all()
    assert (g.src != g.dst).all()
    pairs = set(zip(g.src.tolist(), g.rel.tolist(), g.dst.tolist()))
    assert len(pairs) == len(g.src)  # merged, no duplicate edges
    ip = RELS.index("has_phenotype")
    types = {g.type_name(x) for x in np.unique(g.dst[g.rel == ip])}
    assert types <= {"phenotype", "lab_finding", "imaging_finding"}
    # HSDN symptoms (MeSH names) join HPO terms by name: an HSDN edge points at an HP: node
    hsdn_bit = 1 << SOURCES.index("hsdn")
    hs = np.flatnonzero((g.rel == ip) & (g.prov & hsdn_bit > 0))
    assert sum(g.ids[x].startswith("HP:") for x in g.dst[hs]) > 0.3 * len(hs)


def test_wikidata_label_join(small):
    g = small
    # Wikidata's "amyotrophic lateral sclerosis" is matched by label to DOID:332, which Orphanet 803 also merged into
    als = g.index["ORPHA:803"]
    assert g.ids[als] == "DOID:332"
    assert any(x.startswith("WD:") for x in g.xrefs["DOID:332"])


def test_save_load_roundtrip(small, tmp_path):
    small.save(tmp_path / "g")
    t = time.time()
    g = Graph.load(tmp_path / "g")
    assert time.time() - t < 30  # generous; the real load is well under a second
    assert g.ids == small.ids and g.names == small.names
    for k in ("src", "dst", "rel", "prov", "attr"):
        assert np.array_equal(getattr(g, k), getattr(small, k))
    assert np.array_equal(np.isnan(g.freq), np.isnan(small.freq))
    assert "| has_phenotype |" in (tmp_path / "g" / "stats.md").read_text()
    assert g.lookup("graves disease", "disease") == g.index["DOID:12361"]


def test_cli_help_and_bad_file(shared, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--sources" in capsys.readouterr().out
    src = shared / "kg-sources" / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst = tmp_path / "kg" / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst.parent.mkdir(parents=True)
    lines = src.read_text().splitlines(keepends=True)[:12]
    lines[9] = lines[9].replace("DOID:", "D0ID:")
    dst.write_text("".join(lines))
    err = usage_error(capsys, ["--kg-sources", str(tmp_path / "kg"), "--sources", "hsdn", "--out", str(tmp_path / "o")])
    assert "symptoms-DO.tsv:10: bad DOID" in err
    err = usage_error(capsys, ["--kg-sources", str(tmp_path / "kg"), "--sources", "hpo", "--out", str(tmp_path / "o")])
    assert "hp.obo: file not found" in err
    lines[9] = src.read_text().splitlines(keepends=True)[9]
    dst.write_text("".join(lines))
    main(["--kg-sources", str(tmp_path / "kg"), "--sources", "hsdn", "--out", str(tmp_path / "o")])
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["sources"] == ["hsdn"]


@pytest.mark.slow
def test_full_build_counts(shared, tmp_path):
    """All default sources (SIDER is non-commercial and stays out unless named)."""
    main(["--kg-sources", str(shared / "kg-sources"), "--out", str(tmp_path / "kg")])
    g = Graph.load(tmp_path / "kg")
    assert "sider" not in g.info["sources"] and not (g.rel == RELS.index("side_effect")).any()
    nt, et = g.counts()
    # MANIFEST counts: 12,246 DOIDs; 12,687 HPO diseases, most merged into DOIDs; 18,387 phenotypic-abnormality terms
    assert sum(g.ids[i].startswith("DOID:") for i in g.of_type("disease")) == 12246
    hpo_diseases = sum(1 for k in g.index if k.split(":")[0] in ("OMIM", "ORPHA", "DECIPHER"))
    assert hpo_diseases >= 12687
    assert 18000 < nt["phenotype"] + nt["lab_finding"] + nt["imaging_finding"] < 19500 + 1000
    # 254,621 phenotype rows minus NOT/excluded, deduplicated per merged disease
    hpo_bit = 1 << SOURCES.index("hpo")
    hp = int(((g.rel == RELS.index("has_phenotype")) & (g.prov & hpo_bit > 0)).sum())
    assert 200_000 < hp < 254_621
    assert et["targets"] == 2991  # DrugCentral: 2,991 drug->gene rows, all distinct
    assert et["in_class"] == 10959


def _hpo_copy(shared, tmp_path, manifest=True):
    """A kg-sources folder whose hpo/ holds real copies (links) the test may replace one by one."""
    src = shared / "kg-sources" / "hpo"
    dst = tmp_path / "src" / "hpo"
    dst.mkdir(parents=True)
    for f in ("hp.obo", "phenotype.hpoa", "genes_to_phenotype.txt") + (("MANIFEST.md",) if manifest else ()):
        (dst / f).symlink_to(src / f)
    return dst


def _cut(path, keep, before=None):
    """Replace a linked file by its first `keep` share of lines (up to the next `before` line): a copy
    cut at a line boundary (and, for an OBO file, between two stanzas, so each stanza parses)."""
    lines = path.read_bytes().splitlines(keepends=True)
    n = int(len(lines) * keep)
    while before is not None and lines[n] != before:
        n += 1
    path.unlink()
    path.write_bytes(b"".join(lines[:n]))


def test_truncated_source_fails_on_the_manifest_checksum(shared, tmp_path, capsys):
    d = _hpo_copy(shared, tmp_path)
    _cut(d / "phenotype.hpoa", 0.5)
    err = usage_error(capsys, ["--kg-sources", str(tmp_path / "src"), "--sources", "hpo", "--out", str(tmp_path / "o")])
    assert "phenotype.hpoa: sha256" in err and "MANIFEST.md" in err
    assert not (tmp_path / "o").exists()


def test_truncated_ontology_without_manifest_fails_on_dropped_rows(shared, tmp_path, capsys):
    d = _hpo_copy(shared, tmp_path, manifest=False)
    _cut(d / "hp.obo", 0.25, before=b"[Term]\n")
    err = usage_error(capsys, ["--kg-sources", str(tmp_path / "src"), "--sources", "hpo", "--out", str(tmp_path / "o")])
    assert "annotations name HPO ids missing from" in err and "truncated" in err


def test_invalid_utf8_names_file_and_line(shared, tmp_path, capsys):
    src = shared / "kg-sources" / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst = tmp_path / "kg" / "hetionet-upstream" / "hsdn" / "symptoms-DO.tsv"
    dst.parent.mkdir(parents=True)
    lines = src.read_bytes().splitlines(keepends=True)[:40]
    lines[29] = lines[29].replace(b"a", b"\xff", 1)
    dst.write_bytes(b"".join(lines))
    err = usage_error(capsys, ["--kg-sources", str(tmp_path / "kg"), "--sources", "hsdn", "--out", str(tmp_path / "o")])
    assert "symptoms-DO.tsv:30: not valid UTF-8" in err


KILL_DURING_SAVE = """
import os, sys, numpy as np
from kg.build import Graph
g = Graph.load(sys.argv[1])
g.names[0] = "new name"
real = np.savez
def dying(*a, **k):  # nodes.json of the new graph is written; the process dies before edges.npz
    os._exit(9)
np.savez = dying
g.save(sys.argv[1])
"""


def test_kill_during_save_leaves_the_old_graph(small, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    out = tmp_path / "g"
    small.save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(out)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 9
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched: the new files went elsewhere
    assert Graph.load(out).names == small.names
    small.save(out)  # a later save replaces it (and the dead process's temporary folder does not block it)
    assert Graph.load(out).names == small.names


def test_load_errors_name_the_file(small, tmp_path):
    out = tmp_path / "g"
    small.save(out)
    (out / "nodes.json").write_text('{"ids": [')
    with pytest.raises(SourceError, match=r"nodes\.json: unreadable"):
        Graph.load(out)
    small.save(out)
    (out / "edges.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(SourceError, match=r"edges\.npz: unreadable"):
        Graph.load(out)
