"""Which result the submission uses, said once for the printed summary, ``metrics.json`` and ``report.html``.

A fused run's submission is the fused result, which may score below one of its members alone: the headline says
so plainly rather than naming a "best head".
"""

from __future__ import annotations

from pipeline.classify.results import ClassificationResult, HeadResult


def submission_block(result: ClassificationResult, run: HeadResult) -> dict:
    """What ``submission.csv`` holds: the result it comes from, its weighted F1 and, fused, each member's alone."""
    block = {"text": submission_text(result, run), "uses": "fused" if result.fusion is not None else "head",
             "head": run.name, "weighted_f1": run.metrics["weighted_f1"]}
    if result.fusion is not None:
        members = {label: member.metrics["weighted_f1"]
                   for label, member in zip(result.fusion.labels, run.members, strict=True)}
        block.update(mode=result.fusion.mode, members_weighted_f1=members,
                     fused_minus_best_member=round(run.metrics["weighted_f1"] - max(members.values()), 6))
    return block


def submission_text(result: ClassificationResult, run: HeadResult) -> str:
    """One sentence: which result the submission uses and, fused, how it compares with each member alone.

    e.g. ``Submission: late fusion of 2 caches (head mlp), weighted F1 0.931; members alone 0.942 (A) and 0.911
    (B): the fusion is 0.011 below the best member alone.``
    """
    f1 = run.metrics["weighted_f1"]
    fusion = result.fusion
    if fusion is None:
        return f"Submission: head {run.name}, weighted F1 {f1:.3f}."
    what = "late fusion" if fusion.mode == "late" else "concatenated image features"
    scores = [member.metrics["weighted_f1"] for member in run.members]
    alone = [f"{score:.3f} ({label})" for label, score in zip(fusion.labels, scores, strict=True)]
    listed = ", ".join(alone[:-1]) + f" and {alone[-1]}" if len(alone) > 1 else alone[0]
    gap = f1 - max(scores)
    compared = (f"the fusion is {-gap:.3f} below the best member alone" if gap < 0 else
                f"the fusion is {gap:.3f} above the best member alone" if gap > 0 else
                "the fusion equals the best member alone")
    return (f"Submission: {what} of {len(scores)} caches (head {run.name}), weighted F1 {f1:.3f}; members alone "
            f"{listed}: {compared}.")
