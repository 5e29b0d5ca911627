"""Golden events: compare the events a camera received with its script (precision, recall, onset delay)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from protos.petstream.v1 import petstream_pb2 as pb
from simulators.camera import CameraReport


@dataclass(frozen=True)
class Episode:
    behavior: str
    start_us: int
    end_us: int


@dataclass
class BehaviorScore:
    behavior: str
    truth: int = 0  # scripted episodes
    predicted: int = 0  # episodes the server reported (STARTED events)
    matched_truth: int = 0
    matched_predicted: int = 0
    onset_delays_s: list[float] = field(default_factory=list)  # wall clock: frame sent -> STARTED received
    onset_video_delays_s: list[float] = field(default_factory=list)  # video time: truth start -> event pts

    @property
    def precision(self) -> float:
        return self.matched_predicted / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.matched_truth / self.truth if self.truth else 1.0

    @property
    def median_onset_s(self) -> float | None:
        return statistics.median(self.onset_delays_s) if self.onset_delays_s else None

    def as_dict(self) -> dict[str, object]:
        return {
            "truth_episodes": self.truth,
            "predicted_episodes": self.predicted,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "median_onset_delay_s": None if self.median_onset_s is None else round(self.median_onset_s, 3),
            "median_onset_video_delay_s": (
                round(statistics.median(self.onset_video_delays_s), 3) if self.onset_video_delays_s else None
            ),
        }


def truth_episodes(truth: dict[int, frozenset[str]], behaviors: list[str], min_len_us: int = 0) -> list[Episode]:
    """Contiguous runs of frames labelled with each behavior (from what the camera actually sent)."""
    episodes: list[Episode] = []
    times = sorted(truth)
    if not times:
        return episodes
    step = (times[-1] - times[0]) // max(len(times) - 1, 1)
    for behavior in behaviors:
        start: int | None = None
        for t in times:
            if behavior in truth[t] and start is None:
                start = t
            elif behavior not in truth[t] and start is not None:
                if t - start >= min_len_us:
                    episodes.append(Episode(behavior, start, t))
                start = None
        if start is not None and times[-1] + step - start >= min_len_us:
            episodes.append(Episode(behavior, start, times[-1] + step))
    return episodes


def predicted_episodes(report: CameraReport) -> list[tuple[Episode, float]]:
    """Episodes from STARTED/ENDED pairs, each with the monotonic arrival time of its STARTED event."""
    open_: dict[str, tuple[pb.BehaviorEvent, float]] = {}
    out: list[tuple[Episode, float]] = []
    end_of_stream = max(report.truth) if report.truth else 0
    for event, arrived in zip(report.events, report.event_arrivals, strict=True):
        if event.state == pb.STARTED:
            open_[event.event_id] = (event, arrived)
        elif event.state == pb.ENDED and event.event_id in open_:
            started, at = open_.pop(event.event_id)
            out.append((Episode(started.behavior, started.start_pts_us or started.pts_us, event.pts_us), at))
    for started, at in open_.values():
        out.append((Episode(started.behavior, started.start_pts_us or started.pts_us, end_of_stream), at))
    return out


def score_camera(
    report: CameraReport, behaviors: list[str], *, slack_s: float = 3.0, min_truth_s: float = 2.0
) -> dict[str, BehaviorScore]:
    """Match predicted to scripted episodes: overlap within `slack_s`. Truth episodes shorter than
    `min_truth_s`, or starting in the last `slack_s` of the stream, are not counted (too short to see)."""
    slack = int(slack_s * 1e6)
    last = max(report.truth) if report.truth else 0
    truths = [e for e in truth_episodes(report.truth, behaviors, int(min_truth_s * 1e6)) if e.start_us < last - slack]
    preds = predicted_episodes(report)
    scores = {b: BehaviorScore(b) for b in behaviors}
    for b in behaviors:
        bt = [e for e in truths if e.behavior == b]
        bp = [(e, at) for e, at in preds if e.behavior == b]
        s = scores[b]
        s.truth, s.predicted = len(bt), len(bp)
        s.matched_predicted = sum(
            any(p.start_us < t.end_us + slack and p.end_us > t.start_us - slack for t in bt) for p, _ in bp
        )
        for t in bt:
            hits = [(p, at) for p, at in bp if p.start_us < t.end_us + slack and p.end_us > t.start_us - slack]
            if hits:
                s.matched_truth += 1
                p, at = min(hits, key=lambda h: h[0].start_us)
                s.onset_delays_s.append(max(0.0, at - report.sent_at(t.start_us)))
                s.onset_video_delays_s.append((p.start_us - t.start_us) / 1e6)
    return scores


def merge_scores(per_camera: list[dict[str, BehaviorScore]]) -> dict[str, BehaviorScore]:
    merged: dict[str, BehaviorScore] = {}
    for scores in per_camera:
        for b, s in scores.items():
            m = merged.setdefault(b, BehaviorScore(b))
            m.truth += s.truth
            m.predicted += s.predicted
            m.matched_truth += s.matched_truth
            m.matched_predicted += s.matched_predicted
            m.onset_delays_s += s.onset_delays_s
            m.onset_video_delays_s += s.onset_video_delays_s
    return merged


def format_table(scores: dict[str, BehaviorScore]) -> str:
    lines = [f"{'behavior':<18} {'truth':>5} {'pred':>5} {'precision':>9} {'recall':>7} {'onset(s)':>9}"]
    for b, s in scores.items():
        onset = "-" if s.median_onset_s is None else f"{s.median_onset_s:.2f}"
        lines.append(f"{b:<18} {s.truth:>5} {s.predicted:>5} {s.precision:>9.2f} {s.recall:>7.2f} {onset:>9}")
    return "\n".join(lines)
