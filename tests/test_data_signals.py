"""data/signals.py: the paper's verifiable signals on a chain of thought (every stated calculation recomputed, units
checked against their quantity and earlier mentions) and the detector of stated assumptions and uncertainty, on the
198 real HuatuoGPT-o1 chains (all their calculations listed and right, no unit wrong, 18 stating a limit) and on
planted faults: one number or unit of a real chain changed. test_data_distill checks that verdict() rejects the same
planted chains for these reasons."""
import json

import pytest

from data.signals import calculation_error, calculations, states_limits, unit_error
from eval.records import make_record

BODY = ("The patient has fever, a new murmur and splinter haemorrhages after a dental procedure, which points to "
        "infective endocarditis; the other options explain only part of this picture.")
BODY_ZH = "患者发热，新出现心脏杂音，牙科操作后出现甲下线状出血，提示感染性心内膜炎，其他选项只能解释部分表现。"
# (chain, old, new): one stated result made wrong in a real chain
CALC_FAULTS = [(45, "which equals 8,000", "which equals 7,000"),         # a wrong difference
               (45, "which equals 50%", "which equals 60%"),             # a wrong quotient
               (107, "= 9.48 mEq/L", "= 10.48 mEq/L"),                   # a wrong product inside
               (101, "which gives me 10", "which gives me 100"),         # "dividing 1 by 0.10 gives"
               (188, "I get... 2730", "I get... 2370"),                  # "multiply 6 mg/L by 455 liters"
               (111, "it results in a need for 600 ml in total",
                "100 ml/kg x 6 kg = 660 ml in total")]                   # a wrong dose product
CALC_RIGHT = (111, "it results in a need for 600 ml in total", "100 ml/kg x 6 kg = 600 ml in total")
# (chain, old, new): one unit swapped in a real chain
UNIT_SWAPS = [(0, "low at 6 g/dL", "low at 6 mg/dL"),                          # hemoglobin in mg/dL
              (106, "consuming 25 grams of salt", "consuming 25 milligrams of salt"),  # question: 25g
              (55, "potassium at 2.9 mEq/L", "potassium at 2.9 mg/dL"),        # question: mEq/L
              (111, "The child weighs 6 kg", "The child weighs 6 g"),          # question: 6 kg
              (42, "107/70 mmHg", "107/70 mg/dL")]                             # a pressure in mg/dL


@pytest.fixture(scope="module")
def huatuo(shared):
    """The 198 HuatuoGPT-o1 demo items as (record, chain)."""
    raw = json.loads((shared / "data" / "huatuogpt_o1_demo" / "demo_data.json").read_text())
    return [(make_record(f"h-{i}", "huatuo", "train", x["question"], x["options"], x["answer_idx"]),
             x["Complex_CoT"].strip()) for i, x in enumerate(raw)]


def planted(huatuo, i, old, new):
    """Chain i with `old` (found exactly once) replaced by `new`, and its record."""
    rec, think = huatuo[i]
    assert think.count(old) == 1, old
    return think.replace(old, new), rec


def test_calculations_real_chains_and_planted_faults(huatuo):
    found = {(i, expr): val for i, (_, t) in enumerate(huatuo) for _, expr, val, wrong in calculations(t)}
    # every calculation the 198 real chains state in a form that parses, all right (read by hand)
    assert found == {(45, "10000 - 2000"): 8000, (45, "( 4000 / 8000 ) * 100"): 50, (101, "80 - 70"): 10,
                     (101, "1 / 0.10"): 10, (106, "10 - 2"): 8, (106, "8 / 0.4"): 20,
                     (107, "8.2 + 0.8 * ( 4.0 - 2.4 )"): pytest.approx(9.48), (188, "6 * 455"): 2730}
    assert [i for i, (_, t) in enumerate(huatuo) if calculation_error(t)] == []
    for i, old, new in CALC_FAULTS:
        think, _ = planted(huatuo, i, old, new)
        assert calculation_error(think), (i, new)
    think, _ = planted(huatuo, *CALC_RIGHT)
    assert calculation_error(think) is None
    wrong = ["2 x 3 = 7", "so 15 mg/kg × 70 kg = 1,150 mg", "40% of 25 g is 12 g", "AG = 140 - (103 + 25) = 16",
             "dividing 4,000 by 8,000 gives 60%", "and 1/4 = 0.25, so 2 * 4 is about 10",
             "6 mg/L x 455 L = 2.73 mg"]
    right = ["(5 / 360) * 100,000 = 1,388.89", "(5 / 360) * 100,000 = 1,389", "(5 / 360) * 100,000 is about 1,400",
             "4,000 / 8,000 = 50%", "the dose is 5 - 10 mg, which is 2 tablets", "onset in 20-30 minutes is 1 sign",
             "a rate of 36/1000 is 3", "CURB-65: confusion 1 + urea 1 + RR 1 = 3", "E2 + V3 + M5 = 10",
             "roughly 1 - 2 g/dL per month is 0.25 - 0.5 g/dL a week", "2 + 2 = 4 x 10^9/L",
             "6 mg/L x 455 L = 2.73 g", "2730 mg / 1000 = 2.73 g"]
    assert [w for w in wrong if not calculation_error(w)] == []
    assert [r for r in right if calculation_error(r)] == []


def test_units_real_chains_and_planted_swaps(huatuo):
    assert [i for i, (rec, t) in enumerate(huatuo) if unit_error(t, rec["question"])] == []
    for i, old, new in UNIT_SWAPS:
        think, rec = planted(huatuo, i, old, new)
        assert unit_error(think, rec["question"]), (i, new)
    think, rec = planted(huatuo, *CALC_RIGHT)
    assert unit_error(think, rec["question"]) is None
    q = "Serum sodium 138 mEq/L, glucose 5.5 mmol/L, hemoglobin 12 g/dL. He weighs 70 kg."
    right = ["Sodium is 138 mmol/L, normal.", "Glucose 5.5 mmol/L, i.e. 99 mg/dL.", "Hemoglobin 12 g/dL (120 g/L).",
             "His pulse pressure of 40 mmHg is wide.", "Vitamin K 10 mg is given.", "He takes 70 mg of iron.",
             "Her temperature is 38°C, pulse 110/min."]
    wrong = ["Glucose 5.5 mg/dL is low.", "Hemoglobin 12 mg/dL.", "He weighs 70 g.", "Temperature of 38 mmHg."]
    assert [r for r in right if unit_error(r, q)] == []
    assert [w for w in wrong if not unit_error(w, q)] == []


def test_states_limits_real_chains_and_phrasings(huatuo):
    chains = {i: t for i, (_, t) in enumerate(huatuo)}
    # real chains: 155 says it cannot rule out drug use, 172 that the history may be incomplete, 133 both assumes
    # ("assuming he's all clear") and names what it would need; 3 states neither, with no hedge at all
    assert [states_limits(chains[i]) for i in (155, 172, 133, 3)] == [1, 1, 2, 0]
    assert sum(states_limits(t) > 0 for t in chains.values()) == 18
    hedges_only = "Hmm, maybe it is endocarditis. Wait, perhaps. " + BODY
    assert states_limits(hedges_only) == 0
    assert states_limits("Assuming normal renal function, " + BODY) == 1
    assert states_limits(BODY + " The question doesn't say whether she is pregnant.") == 1
    assert states_limits("I'm not entirely sure, but assuming no recent travel, " + BODY) == 2
    assert states_limits("The patient assumes a tripod position. Let's take a moment to confirm this.") == 0
    assert states_limits("假设肾功能正常，" + BODY_ZH + "但不能排除风湿热。") == 2
