"""The report, built from planted stores with known effects: the paper named and the bottom line first, two
verdicts per claim in their own words, the paper's own effect and the rank agreement beside ours, the effect
against epoch and its trend, the learning curves' state, time claims only from trials that had their node to
themselves, factor effects grouped under their interactions, captions naming the paper's figures, figures
legible at 800 pixels, and the per-seed values as CSV inside the page."""
import base64
import csv
import html
import io
import re

import numpy as np
import pytest

from results.report import summary_lines, write_report
from results.rows import rows_for_trial
from results.store import ParquetStore
from results.table_data import groups_of, load_table_data

TABLE1 = [(layer, act, pool) for layer in ("conv", "scs") for act in ("relu", "none") for pool in ("max", "maxabs")]
EPOCHS = 6


def plant(store, seeds=range(5), dip=0.15, conv_relu_gain=0.08, budget="full", overlap=False, rng_seed=0,
          evaluate=False):
    """table1 trials whose best accuracy carries known effects. The dip grows with training (0 at epoch 1,
    `dip` at the last); every curve still rises at the end. Trials run one after another on one node
    (or, with overlap, two at a time)."""
    rng = np.random.default_rng(rng_seed)
    start = 1_800_000_000.0
    for seed in seeds:
        offset = rng.normal(0, 0.02)
        for i, (layer, act, pool) in enumerate(TABLE1):
            final = 0.60 + offset + rng.normal(0, 0.004)
            final += conv_relu_gain if (layer, act) in (("conv", "relu"), ("scs", "none")) else 0
            seconds = 2.0 if layer == "scs" else 1.0
            results, clock = [], start
            start += EPOCHS * seconds / (2 if overlap else 1)  # with overlap the next trial starts half-way
            for e in range(1, EPOCHS + 1):
                acc = final * (0.5 + 0.5 * e / EPOCHS)
                if act == "relu" and pool == "maxabs":
                    acc -= dip * (e - 1) / (EPOCHS - 1)
                clock += seconds
                jitter = 1 + rng.normal(0, 0.02)
                results.append({"epoch": e, "test_acc": acc, "train_time_s": seconds * 0.9 * jitter,
                                "eval_time_s": (0.4 if layer == "scs" else 0.5) * jitter, "ended_at": clock,
                                "time_this_iter_s": seconds, "node_id": "node-a", "gpu": "cpu"})
                if evaluate and layer == "scs":  # the learned p of the first layer's 8 kernels
                    results[-1]["layers"] = [{"layer_index": 0, "layer_name": "features.0.layer", "layer_type": "scs",
                                              "weight_norm": 1.0, "grad_norm": 0.1,
                                              "p_values": list(rng.uniform(1, 3, 8))}]
            if evaluate:  # PGD from eps 0, and saliency maps of three images
                results[-1]["robustness"] = [{"attack": "pgd_linf", "eps": eps, "steps": 10, "step_size": eps / 4,
                                              "accuracy": final - eps * (4 + 4 * (layer == "conv")), "n_images": 100}
                                             for eps in (0.0, 0.001, 0.01, 0.03)]
                results[-1]["saliency"] = [{"image_index": k, "label": k, "predicted": k, "height": 32, "width": 32,
                                            "map": list(rng.random(1024)), "sparsity_gini": 0.3 + 0.1 * (layer == "scs"),
                                            "top5_mass": 0.1, "image": list(rng.integers(0, 256, 3 * 32 * 32))}
                                           for k in range(3)]
            config = dict(arch="rohrer100k", layer=layer, activation=act, pooling=pool, normalization="none",
                          image_dim=32, p_mode="learned", epochs=EPOCHS, seed=seed, dataset="cifar10")
            tid = f"t{seed}_{i}"
            store.write_trial("exp", tid, rows_for_trial("exp", tid, "table1", budget, config, results, "done",
                                                          paper_table="table1"))
    return store


def summary_of(store):
    ((_, _, _, summary, _),) = list(groups_of(load_table_data(store)))
    return summary


DIP = "With ReLU, MaxAbsPool2d trains worse than MaxPool2d in the Rohrer nets"


def test_the_summary_states_the_planted_effects_with_their_verdicts_and_trends(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s"))))
    found = {v.claim.name: v for v in summary.verdicts}
    dip = found[DIP]
    assert (dip.budget_verdict, dip.paper_verdict) == ("supported", "supported")
    assert dip.interval.low < 0.15 < dip.interval.high
    assert dip.prob[1:] == (5, 5) and dip.prob[0] > 0.99  # P(ReLU+MaxPool2d > ReLU+MaxAbsPool2d) on a new seed
    assert found["Conv2d needs ReLU"].paper_verdict == "supported"
    assert found["Conv2d needs ReLU"].interval.estimate == pytest.approx(0.08, abs=0.01)
    assert found["SCS without ReLU is as accurate as Conv2d with ReLU"].paper_verdict == "supported"
    slower = found["SCS trains slower than Conv2d"]
    assert slower.budget_verdict == "supported" and slower.shown.estimate == pytest.approx(2.0, rel=0.01)
    assert found["SCS evaluates faster than Conv2d"].budget_verdict == "supported"
    # the dip grows with training: its effect against epoch rises toward the claimed side
    trend = summary.trends[dip.claim.name]
    assert trend.direction == 1 and trend.slope.estimate == pytest.approx(0.15 / (EPOCHS - 1), rel=0.05)
    assert "moving toward the claimed side" in summary.reading(dip)
    series = summary.series[dip.claim.name]
    assert series[series["epoch"] == EPOCHS]["value"].mean() == pytest.approx(dip.interval.estimate)
    assert "still rising at the end (epochs 4-6) in 8 of 8 variants" in summary.curves_text()
    (line,) = [x for x in summary_lines(summary) if x.startswith(DIP)]
    assert line.startswith(f"{DIP}: at this budget SUPPORTED; the paper's claim SUPPORTED. ReLU+MaxPool2d minus "
                           "ReLU+MaxAbsPool2d, mean over layers = +0.1")
    assert "P(ReLU+MaxPool2d > ReLU+MaxAbsPool2d) = 1.00 (5 of 5 seeds)" in line
    assert "The paper's: +0.090 (outside our interval; one run per variant, no spread)" in line
    assert "Effect against epoch: over epochs 4-6 the effect changes by +0.03" in line


def test_a_reduced_budget_decides_nothing_about_the_paper_and_the_trend_says_where_the_effect_is_heading(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s")), budget="quick", dip=-0.10))
    dip = next(v for v in summary.verdicts if v.claim.name == DIP)
    assert dip.budget_verdict == "contradicted" and dip.paper_verdict == "not tested at the paper's budget"
    assert "moving away from the claimed side" in summary.reading(dip)  # the planted dip is reversed


def test_time_claims_are_judged_only_from_trials_that_had_their_node_to_themselves(tmp_path):
    summary = summary_of(plant(ParquetStore(str(tmp_path / "s")), overlap=True))
    for v in summary.verdicts:
        if v.claim.time:
            assert v.budget_verdict == v.paper_verdict == "not judged"
            assert "shared its node with another trial" in v.budget_reason
        else:
            assert v.budget_verdict != "not judged"


def test_the_report_leads_with_the_summary_and_every_section_links(tmp_path):
    store = plant(ParquetStore(str(tmp_path / "s")), budget="quick")
    page = write_report(store, tmp_path / "r").read_text()
    summary_at, table_at = page.index("id='summary'"), page.index("-table'>Table</h4>")
    assert summary_at < table_at  # the summary comes first
    for anchor in re.findall(r"href='#([^']+)'", page):
        assert f"id='{anchor}'" in page, anchor  # every contents entry points at a section
    assert page.count("<figcaption>") == page.count("<figure") > 5  # every figure has its caption
    for verdict in summary_of(store).verdicts:
        assert verdict.claim.name in page
    assert "Final Acc." in page and "selected on the test set" in page


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """A quick (reduced-budget) table1 with PGD, saliency and p, and its report page."""
    root = tmp_path_factory.mktemp("quick")
    store = plant(ParquetStore(str(root / "s")), seeds=range(3), budget="quick", evaluate=True)
    return store, write_report(store, root / "r").read_text()


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_the_page_names_the_paper_and_says_its_bottom_line_first(quick_report):
    store, page = quick_report
    head = page[:page.index("<nav")]
    assert "Exploring the Sharpened Cosine Similarity" in head and "href='https://arxiv.org/abs/2307.13855'" in head
    bottom = re.search(r"<p class='bottom' id='bottom-line'><b>(.*?)</b></p>", page)
    assert bottom and bottom.start() < page.index("<nav") < page.index("id='summary'")  # findings before method
    sentence = html.unescape(bottom.group(1))
    assert sentence.startswith("Nothing about the paper's accuracy claims is decided at 6 of 800 epochs; at this "
                               "budget ") and "effects point the paper's way" in sentence
    assert "the variants' ranks agree with the paper's (rho +" in sentence  # its interval above 0: "agree"
    assert sentence.endswith(".") and ". " not in sentence  # one sentence
    # the method is written once, folded away
    assert page.count("How the verdicts are reached") == 1 and "<details id='method'>" in page
    assert page.count("Every effect and claim here is a difference between variants") == 1


def test_every_claim_gets_two_verdicts_in_their_own_words_and_the_papers_effect(quick_report):
    from results.claims import BUDGET_WORDS, PAPER_WORDS

    store, page = quick_report
    summary = summary_of(store)
    badges = [(kind, html.unescape(word)) for kind, word in
              re.findall(r"<span class='badge [^']+'>(at this budget|the paper’s claim): ([^<]+)</span>", page)]
    assert len(badges) == 2 * len(summary.verdicts)
    assert {w for k, w in badges if k == "at this budget"} <= set(BUDGET_WORDS)
    assert {w for k, w in badges if k != "at this budget"} <= set(PAPER_WORDS)
    for v in summary.verdicts:
        if not v.claim.time:  # a reduced budget: judged at this budget, never at the paper's
            assert v.paper_verdict == "not tested at the paper's budget" and v.budget_verdict in BUDGET_WORDS[:3]
    text = _text(page)
    assert "The paper's: -0.016 (" in text and "The paper's: +0.073 (" in text  # Table 1's own effects
    assert "one run per variant, no spread" in text


def test_the_rank_line_is_spearmans_rho_against_the_papers_table(quick_report):
    from scipy import stats

    from results.paper import paper_values

    store, page = quick_report
    summary = summary_of(store)
    trials = store.read_table("trials").to_pandas()
    means = trials.groupby(["layer", "activation", "pooling"])["val_acc"].mean()
    paper = paper_values("table1")
    names = {"Conv2d": "conv", "SCS": "scs", "ReLU": "relu", "None": "none", "MaxPool2d": "max",
             "MaxAbsPool2d": "maxabs"}
    expected = stats.spearmanr([means[(names[r["Layer"]], names[r["Activation"]], names[r["Pooling"]])]
                                for _, r in paper.iterrows()], paper["Paper Val. Acc."]).statistic
    assert summary.rank.rho == pytest.approx(expected) and summary.rank.variants == 8 and summary.rank.seeds == 3
    assert summary.rank.low <= summary.rank.rho <= summary.rank.high
    assert f"Spearman's rho = {summary.rank.rho:+.2f} [" in _text(page)
    assert "does not need the paper's budget" in _text(page)


def test_factor_effects_say_a_minus_b_and_group_simple_effects_under_their_interaction(quick_report):
    store, page = quick_report
    table = page[page.index("<table class='effects'>"):]
    table = table[:table.index("</table>")]
    assert "Effect (A - B)" in table
    kinds = re.findall(r"<tr class='(main|interaction|simple)'>", table)
    names = [html.unescape(n) for n in re.findall(r"<td class='effect'>([^<]+)</td>", table)]
    for i, kind in enumerate(kinds):  # every simple effect follows its interaction (or another of its group)
        if kind == "simple":
            parent = names[i].split("(under ")[1].rstrip(")")
            before = [names[j] for j in range(i) if kinds[j] == "interaction"]
            assert before and before[-1] == parent, names[i]
    assert "simple" in kinds
    summary = summary_of(store)
    assert summary.strongest and all(e.excludes_zero for _, e in summary.strongest)
    assert "Strongest factor effects" in page and summary.strongest[0][1].name in _text(page)


def test_captions_name_the_papers_figures_and_figures_are_legible_at_800_pixels(quick_report):
    from results.figures import figures_for_group

    store, page = quick_report
    captions = {kind: html.unescape(cap) for kind, cap in
                re.findall(r"<figure data-kind='([a-z-]+)'>.*?<figcaption>(.*?)</figcaption>", page, re.S)}
    assert "It reproduces Fig 5 of the paper" in captions["pgd"] and "baseline (Conv2d / ReLU / MaxPool2d)" \
        in captions["pgd"]
    assert "It reproduces Fig 3 of the paper" in captions["saliency"] and "compares their sparsity" in captions["saliency"]
    assert "It reproduces Fig 7 of the paper" in captions["p-per-kernel"]
    assert "It reproduces Table 1 of the paper" in captions["accuracy"]
    assert "The paper's claim:" in captions["claims"]
    assert "Gini (mean over seeds)" in page  # every seed's Gini, with its interval, beside the maps
    ((_, group, mine, summary, alone),) = list(groups_of(load_table_data(store)))
    for figure in figures_for_group(group, mine, summary, alone):
        assert figure.smallest_text_px(770) >= 10, (figure.kind, figure.smallest_text_px(770))
        assert f"width='{figure.css_width}'" in page  # shown at half the PNG's pixels: sharp on high-DPI screens
    claim = next(f for f in figures_for_group(group, mine, summary, alone) if f.kind == "claims")
    legend = [t.get_text() for t in claim.fig.legends[0].get_texts()]
    assert any(t.startswith("threshold (") for t in legend)  # the dashed line is in the legend
    band = next(f for f in figures_for_group(group, mine, summary, alone) if f.kind == "p-per-kernel")
    assert all(len(ax.get_lines()) <= 1 for ax in band.fig.axes)  # a band across kernels, not a line per kernel


def test_the_per_seed_values_download_as_csv_from_inside_the_page(quick_report):
    store, page = quick_report
    links = dict(re.findall(r"<a download='([^']+)' href='data:text/csv;base64,([^']+)'>", page))
    trials = list(csv.DictReader(io.StringIO(base64.b64decode(links["exp_table1_trials.csv"]).decode())))
    assert len(trials) == 24 and {t["seed"] for t in trials} == {"0", "1", "2"}
    assert {"variant", "seed", "val_acc", "final_acc", "train_s_per_epoch"} <= set(trials[0])
    claims = list(csv.DictReader(io.StringIO(base64.b64decode(links["exp_table1_claims.csv"]).decode())))
    assert {c["claim"] for c in claims} >= {"Conv2d needs ReLU"} and all(c["value"] for c in claims)



def test_a_sweeps_own_claims_are_judged_and_reported_beside_the_papers(tmp_path):
    """A [[claim]] of the sweep file the store keeps is judged by the one mechanism the paper's claims use."""
    store = plant(ParquetStore(str(tmp_path / "s")), seeds=range(3), budget="quick")
    store.write_sweep("exp", 'name = "exp"\nepochs = 6\n\n[fixed]\narch = "rohrer100k"\n\n[[grid]]\n'
                             'group = ["table1"]\nlayer = ["conv", "scs"]\n\n[[claim]]\nname = "MaxPool2d helps SCS"\n'
                             'a = { layer = "scs", pooling = "max" }\nb = { layer = "scs", pooling = "maxabs" }\n'
                             'threshold = 0.01\n')
    ((_, _, _, summary, _),) = list(groups_of(load_table_data(store), store))
    mine = next(v for v in summary.verdicts if v.claim.name == "MaxPool2d helps SCS")
    assert mine.claim.effect == "best SCS/MaxPool2d minus best SCS/MaxAbsPool2d" and mine.interval.n == 3
    assert mine.budget_verdict in ("supported", "contradicted", "undecided") and mine.paper_effect is not None
    page = write_report(store, tmp_path / "r").read_text()
    assert "MaxPool2d helps SCS" in page and page.count("MaxPool2d helps SCS") >= 2  # the summary and its figure


def test_the_rank_sentence_says_what_rho_means_and_only_where_the_paper_can_be_compared():
    """'agree' whatever rho was, on synthetic data too: now agree / agree only partly / disagree by where its
    interval lies, and no comparison with the paper's ranking on data other than CIFAR-10."""
    import pandas as pd

    from results.report import rank_text
    from results.stats import Rank
    from results.summary import summarize

    agree, partly, disagree = Rank(0.69, 0.40, 0.95, 8, 3), Rank(0.30, -0.20, 0.70, 8, 3), Rank(-0.6, -0.9, -0.2, 8, 3)
    assert rank_text([agree]) == "the variants' ranks agree with the paper's (rho +0.69 [+0.40, +0.95])"
    assert "agree only partly with the paper's (the interval holds 0)" in rank_text([partly])
    assert rank_text([disagree]).startswith("the variants' ranks disagree with the paper's (rho -0.60")
    assert "from one seed" in rank_text([Rank(0.5, float("nan"), float("nan"), 8, 1)])
    assert rank_text([agree, partly, disagree]) == ("of 3 tables' variant rankings, 1 agree, 1 agree only partly, "
                                                    "1 disagree with the paper's (rho -0.60 to +0.69)")
    rows = [dict(trial_id=f"t{i}{s}", group="table1", paper_table="table1", arch="rohrer100k", layer=layer,
                 activation=act, pooling="max", normalization="none", dropout=0.0, image_dim=32, p_mode="learned",
                 p_value=None, seed=s, status="done", val_acc=0.5 + 0.1 * i + 0.01 * s, dataset=dataset,
                 budget="reduced", epochs=8, n_train=5000, n_test=2000, train_time_s=1.0, eval_time_s=0.1)
            for dataset in ("synthetic",) for s in range(3)
            for i, (layer, act) in enumerate([("conv", "relu"), ("conv", "none"), ("scs", "relu"), ("scs", "none")])]
    synthetic = summarize("table1", "table1", pd.DataFrame(rows))
    assert synthetic.rank is None and synthetic.rank_note.startswith("not compared: synthetic data, not CIFAR-10")
    cifar = summarize("table1", "table1", pd.DataFrame([dict(r, dataset="cifar10") for r in rows]))
    assert cifar.rank is not None and cifar.rank_note == ""
