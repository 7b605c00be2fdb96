"""The paper this project reproduces: its citation, where each of its experiments is, and its tables' values.

Tables 1-8 are in reference/paper_tables.csv (arXiv 2307.13855, see docs/paper_facts.md); every experiment
of the paper, tables and others, is in common/vocabulary.py PAPER_EXPERIMENTS with its section, figures and
budget. A group of trials is linked to one through its `paper_table` column.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from common.vocabulary import PAPER_EXPERIMENTS, PAPER_SECTIONS

from .variants import LABEL_COLUMNS

__all__ = ["CITATION", "PAPER_CSV", "PAPER_TIMES", "table_number", "paper_values", "paper_table_of", "where_in_paper"]

CITATION = dict(title="Exploring the Sharpened Cosine Similarity",
                authors="Skyler Wu, Fred Lu, Edward Raff, James Holt", year=2023,
                url="https://arxiv.org/abs/2307.13855", arxiv="arXiv 2307.13855", short="Wu et al. 2023")
PAPER_CSV = Path(__file__).parent / "reference" / "paper_tables.csv"
PAPER_TIMES = ["Paper Train Time (s)", "Paper Eval Time (s)"]


def table_number(paper_table: str) -> str:
    """'1' for the paper's Table 1 ("table1"); '' for its other experiments and for anything else."""
    return paper_table[5:] if paper_table.startswith("table") and paper_table[5:].isdigit() else ""


def where_in_paper(paper_table: str) -> str:
    """Where the paper reports an experiment ('Appendix C.1, Fig 7'); '' for a name that is none of them."""
    return PAPER_SECTIONS.get(paper_table, "")


def paper_values(paper_table: str, all_columns: bool = False) -> pd.DataFrame:
    """The paper's rows of one of its tables ("table1" ... "table8"): its label columns and Val. Acc.
    (all_columns: and its seconds per epoch); empty for its other experiments and anything else."""
    columns = LABEL_COLUMNS + ["Paper Val. Acc."] + (PAPER_TIMES if all_columns else [])
    number = table_number(paper_table)
    if not number:
        return pd.DataFrame(columns=columns)
    paper = pd.read_csv(PAPER_CSV, dtype=str, keep_default_na=False)  # "None" is a label, not NA
    paper = paper[paper["table"] == number].rename(columns={
        "architecture": "Architecture", "layer": "Layer", "activation": "Activation", "pooling": "Pooling",
        "dropout": "Dropout", "normalization": "Normalization", "image_dim": "Image Dim.",
        "val_acc": "Paper Val. Acc.", "train_time_s": PAPER_TIMES[0], "eval_time_s": PAPER_TIMES[1]})
    for column in ["Paper Val. Acc."] + PAPER_TIMES:
        paper[column] = paper[column].astype(float)
    return paper[columns].reset_index(drop=True)


def paper_table_of(group: str, trials: pd.DataFrame) -> str:
    """The paper's experiment a group of trials is linked to: their `paper_table`, or for rows of a store
    older than that column, the group's own name when it is one of the paper's; '' if none."""
    linked = trials["paper_table"].dropna().unique() if "paper_table" in trials else []
    linked = [str(v) for v in linked if v]
    if linked:
        return linked[0]
    return group if group in PAPER_EXPERIMENTS else ""
