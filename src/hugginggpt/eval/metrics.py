"""TaskBench's planning metrics: micro F1 over per-sample sets of nodes, edges, argument types and values."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Sequence

from pydantic import BaseModel

from .taskbench import Graph


class Counts(BaseModel):
    """True positives, false positives and false negatives summed over samples."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        """2TP / (2TP + FP + FN); None when neither side has any item (TaskBench's sklearn call reports 0 there)."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else None


def micro_f1(gold: Sequence[Iterable[Hashable]], pred: Sequence[Iterable[Hashable]]) -> Counts:
    """Micro counts over per-sample *sets* (duplicates within a sample count once), as TaskBench's `flatten`."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold samples but {len(pred)} predicted")
    counts = Counts()
    for g, p in zip(gold, pred, strict=True):
        gold_set, pred_set = set(g), set(p)
        counts.tp += len(gold_set & pred_set)
        counts.fp += len(pred_set - gold_set)
        counts.fn += len(gold_set - pred_set)
    return counts


def node_set(graph: Graph, tools: Collection[str]) -> set[str]:
    """Tool names of the plan; names outside the tool list count on neither side, as in TaskBench."""
    return {name for name in graph.nodes if name in tools}


def edge_set(graph: Graph) -> set[tuple[str, str]]:
    return set(graph.links)


def arg_edge_set(graph: Graph) -> set[tuple[str, str]]:
    return set(graph.arg_links)


def type_set(graph: Graph) -> set[str]:
    """`<tool>-<argument type>` for every argument (t-F1)."""
    return {f"{node}-{kind}" for node, args in zip(graph.nodes, graph.arguments, strict=True) for kind, _ in args}


def value_set(graph: Graph) -> set[str]:
    """`<tool>-<argument type>-<value>` for every argument (v-F1)."""
    return {
        f"{node}-{kind}-{value}"
        for node, args in zip(graph.nodes, graph.arguments, strict=True)
        for kind, value in args
    }


class Scores(BaseModel):
    """One split under one variant. F1 values are percentages; None where neither side has any item."""

    samples: int
    parsed: int
    scored: int
    parse_rate: float
    node_f1: float | None
    edge_f1: float | None
    edge_f1_args: float | None
    t_f1: float | None
    v_f1: float | None


def _percent(counts: Counts) -> float | None:
    f1 = counts.f1
    return None if f1 is None else round(100 * f1, 2)


def score(pairs: Sequence[tuple[Graph, Graph | None]], tools: Collection[str], *, drop_unparsed: bool) -> Scores:
    """Score (gold, predicted) pairs; a predicted None is an unparsable plan.

    `drop_unparsed=True` is TaskBench's variant (such samples leave the scores); False counts them as empty plans.
    `edge_f1` takes gold edges from `task_links` and ours from `dep`; `edge_f1_args` takes both from `<node-k>`
    references, as TaskBench's `evaluate.py` does.
    """
    parsed = sum(1 for _, pred in pairs if pred is not None)
    kept = [(g, p if p is not None else Graph()) for g, p in pairs if p is not None or not drop_unparsed]
    gold = [g for g, _ in kept]
    pred = [p for _, p in kept]

    def f1(of) -> float | None:
        return _percent(micro_f1([of(g) for g in gold], [of(p) for p in pred]))

    return Scores(
        samples=len(pairs),
        parsed=parsed,
        scored=len(kept),
        parse_rate=round(100 * parsed / len(pairs), 2) if pairs else 0.0,
        node_f1=f1(lambda graph: node_set(graph, tools)),
        edge_f1=f1(edge_set),
        edge_f1_args=f1(arg_edge_set),
        t_f1=f1(type_set),
        v_f1=f1(value_set),
    )
