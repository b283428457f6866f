"""Nudges: one base class owns schedule, targeting, reach and cost; each kind adds a payload.

Each kind is one `NudgeKind` in `NUDGES` (registry.py): its spec (a `NudgeBase` subclass:
the fields a `[[nudges]]` table writes) and its `Nudge` subclass (what it does).

Every step the engine asks each nudge to (1) contact its targets if this is a contact step,
(2) write what it does this step into an `Effects` record, and after the update
(3) settle costs that depend on the outcome. A nudge draws only from its own named
streams, so adding a nudge with zero effect and zero cost leaves every other draw — and so
the whole run — bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, overload

import numpy as np
from pydantic import Field, model_serializer, model_validator

from . import kernels
from . import network as netmod
from .errors import ScenarioError
from .registry import NUDGES, kind_of
from .rules import CHANNELS
from .scores import betweenness_scores, community_labels, degree_scores, kcore_scores
from .spec import HalfLife, NonNegative, Probability, Spec

if TYPE_CHECKING:
    from .rng import Streams


class Host(Protocol):
    """What nudges read from the engine that runs them (engine.Engine is one): typed here
    so that nudges need not import the engine, which imports them."""

    steps: int
    population: Any  # population.Population (population.py imports the nudge specs)
    network: netmod.Network
    streams: Streams
    stamp_book: StampBook
    adopted: np.ndarray
    score_cache: dict[Any, np.ndarray]

    def ward_rates(self) -> np.ndarray: ...

    def adoption_rate(self) -> float: ...


@overload
def decay(elapsed: np.ndarray, half_life: float | None) -> np.ndarray: ...
@overload
def decay(elapsed: float, half_life: float | None) -> float: ...
def decay(elapsed: np.ndarray | float, half_life: float | None) -> np.ndarray | float:
    """Share of an effect left `elapsed` steps after contact (1 with no half-life)."""
    if half_life is None:
        return np.ones_like(elapsed, dtype=np.float64) if isinstance(elapsed, np.ndarray) else 1.0
    return 0.5 ** (np.asarray(elapsed, dtype=np.float64) / half_life)


class StampBook:
    """Every nudge's stamp arrays as rows of one matrix, so the compiled kernel can read a
    resident's stamps for all nudges without copying them into a per-step array, in the
    narrowest type that holds the run's steps (kernels.stamp_dtype: one byte per resident
    and nudge for runs shorter than 127 steps).

    A nudge that contacts the same fixed targets again would rewrite all their stamps:
    3.5 million of them a week for the national campaign's bin-day texts, ~2.5 ms of a
    10^7 step, memory-bound. Such a mark is deferred instead (`defer`): every stamp equal
    to the targets' last step is to read the new one. Whoever reads `matrix` gets the
    stamps settled first; the compiled decide pass takes the deferred re-stamps along
    (`deferred`) and applies them block by block as it reads the rows, in cache."""

    def __init__(self, n: int, steps: int = 2**31 - 2) -> None:
        self.n = n
        self.dtype = kernels.stamp_dtype(steps)
        self._matrix = np.full((0, n), -1, dtype=self.dtype)
        #: row -> (ids, s_from, t): the row's stamps equal to s_from (exactly ids) read t
        self.pending: dict[int, tuple[np.ndarray, int, int]] = {}

    @property
    def matrix(self) -> np.ndarray:
        """The stamps, every deferred re-stamp applied."""
        self.settle()
        return self._matrix

    def settle(self) -> None:
        for row, (ids, _, t) in self.pending.items():
            kernels.put(self._matrix[row], ids, t)
        self.pending.clear()

    def defer(self, row: int, ids: np.ndarray, s_from: int, t: int) -> None:
        """Re-stamp ids with t, where ids are exactly the residents of `row` stamped s_from
        (the caller's guarantee). Deferred again before it was applied, it keeps the first
        s_from: the row still holds that."""
        old = self.pending.get(row)
        self.pending[row] = (ids, old[1] if old is not None else s_from, t)

    def deferred(self) -> tuple[np.ndarray, np.ndarray]:
        """(the matrix as stored, the deferred re-stamps as rows of (row, s_from, t)), for a
        kernel that applies them to every resident; it then calls `applied()`."""
        rows = [(row, s_from, t) for row, (_, s_from, t) in self.pending.items()]
        return self._matrix, np.array(rows, dtype=np.int64).reshape(len(rows), 3)

    def applied(self) -> None:
        self.pending.clear()

    def new_row(self) -> int:
        self.settle()
        grown = np.full((self._matrix.shape[0] + 1, self.n), -1, dtype=self.dtype)
        grown[:-1] = self._matrix
        self._matrix = grown
        return grown.shape[0] - 1


class Stamps:
    """The step at which each resident was last marked (contacted, pledged; -1 = never),
    with the ids of marked residents cached: most steps mark nobody new, and rescanning
    n stamps every step was a measurable share of a step at a million residents."""

    def __init__(self, book: StampBook) -> None:
        self.book = book
        self.row = self.book.new_row()
        self._ids = np.zeros(0, dtype=np.int64)
        self._last: np.ndarray | None = None  # the ids array marked last time
        self._last_t = -2  # the step it was marked at
        self._alone = False  # nobody else was marked at that step

    @property
    def step(self) -> np.ndarray:
        return self.book.matrix[self.row]

    def mark(self, ids: np.ndarray, t: int) -> None:
        """Stamp residents `ids` with step t. The marked ids are kept up to date from the
        newly marked alone (merged into the sorted list): rescanning all n stamps at every
        contact week cost 25-60 ms a nudge at 10^7 residents, whoever was contacted. The
        same array marked again at a later step is owed to the book (StampBook.defer)
        instead of written."""
        alone = t != self._last_t
        if ids is self._last:  # a nudge with fixed targets passes the same array: nobody new
            if alone and self._alone:  # and the stamps equal to the last step are all theirs
                self.book.defer(self.row, ids, self._last_t, t)
            else:
                kernels.put(self.step, ids, t)
            self._last_t, self._alone = t, alone
            return
        step = self.step
        # the row is all -1 while nobody is marked: then every id is new, no lookup needed
        fresh = ids if not len(self._ids) else ids[step[ids] < 0]
        kernels.put(step, ids, t)
        self._last, self._last_t, self._alone = ids, t, alone
        if len(fresh):
            self._ids = merge_sorted(self._ids, fresh)

    def ids(self) -> np.ndarray:
        return self._ids


def merge_sorted(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The sorted union of `old` (sorted, unique) and `new` (none of them in `old`), in
    O(len(old) + len(new) log len(old)); `new` itself is returned when `old` is empty
    and `new` is already strictly increasing (targets always are: no copy)."""
    if len(new) > 1 and not (new[1:] > new[:-1]).all():
        new = np.unique(new)
    if not len(old):
        return new
    out = np.empty(len(old) + len(new), dtype=np.result_type(old.dtype, new.dtype))
    at = np.searchsorted(old, new)
    at += np.arange(len(new))  # where each new id lands in the union
    is_new = np.zeros(len(out), dtype=bool)
    is_new[at] = True
    out[at] = new
    out[~is_new] = old
    return out


#: residents handled at a time where a whole-population pass would otherwise make an
#: n-sized temporary (flatnonzero's int64 ids, the reach draw's float64 uniforms)
CHUNK = 1 << 18
#: scores read to bound the k-th largest of many (top_k): ~65,000 whatever n
SAMPLE = 1 << 16


def reach_mask(streams: Streams, name: str, n: int, reach: float) -> np.ndarray | None:
    """uniform(name, 0, n) < reach, drawn a chunk at a time (no n-sized float64 array);
    None at reach 1, which every uniform in [0, 1) passes: nothing to draw or keep."""
    if reach >= 1.0:
        return None
    out = np.empty(n, dtype=bool)
    for lo in range(0, n, CHUNK):
        hi = min(lo + CHUNK, n)
        out[lo:hi] = streams.uniform(name, 0, np.arange(lo, hi)) < reach
    return out


def decay_table(t: int, half_life: float | None) -> np.ndarray:
    """Share of an effect left after 0..t steps: elapsed times take at most t+1 values, so
    nudges look the powers up rather than computing one per resident."""
    return decay(np.arange(t + 1), half_life)


class Effects:
    """What the active nudges do to residents in one step, kept as a few *terms* rather
    than n-sized arrays: "everyone stamped by this nudge gets table[t - stamp] on this
    channel". The compiled kernel evaluates the terms per resident as it passes; the numpy
    engine and the per-agent path read dense arrays built from the same terms on first use
    (``fx.utility`` etc.; None = no effect), so the two cannot disagree about a nudge."""

    ADDITIVE = tuple(CHANNELS)  # the channels rules.Inputs reads (rules.CHANNELS)

    def __init__(self, n: int, t: int = 0, ward: np.ndarray | None = None,
                 pool: dict[str, Any] | None = None) -> None:
        self.n = n
        self.t = t
        self.ward = ward
        self._pool = pool if pool is not None else {}  # buffers reused from step to step
        #: (channel, stamps, value by steps elapsed since the stamp), in nudge order
        self.terms: list[tuple[str, Stamps, np.ndarray]] = []
        #: norm messages: (stamps, weight by steps elapsed, rate shown by stamp + 1 and ward,
        #: injunctive)
        self.messages: list[tuple[Stamps, np.ndarray, np.ndarray, bool]] = []
        self.ward_boost: np.ndarray | None = None  # extra weight of in-ward ties, per ward
        self.influence_terms: list[tuple[np.ndarray, float]] = []  # (ids, factor) in order
        self.direct: np.ndarray | None = None  # adopt now, whatever the rule says
        self.locked: np.ndarray | None = None  # cannot lapse this step
        self._dense: dict = {}  # dense views built on first read, dropped on every write

    # -- what nudges write -------------------------------------------------------------
    def add(self, channel: str, stamps: Stamps, table: np.ndarray | float) -> None:
        """Everyone stamped gets table[t - stamp] (a scalar: the same for all) on channel:
        utility/lapse (log-odds of adopting/lapsing), attitude, cost_relief (share of the
        perceived cost removed) or norm_salience (relative increase of the norm's weight)."""
        if channel not in self.ADDITIVE:
            raise ValueError(f"unknown effect channel {channel!r}")
        if not len(stamps.ids()):
            return
        if np.ndim(table) == 0:
            table = np.full(self.t + 1, float(table))
        self.terms.append((channel, stamps, np.asarray(table, dtype=np.float64)))
        self._dense.clear()

    def message(self, stamps: Stamps, weight: np.ndarray | float, shown: np.ndarray,
                injunctive: bool) -> None:
        """A norm message: a resident stamped at step s sees the rate shown[s + 1, ward],
        weighted by weight[t - s] (shown[0] is never read for them)."""
        if not len(stamps.ids()):
            return
        if np.ndim(weight) == 0:
            weight = np.full(self.t + 1, float(weight))
        self.messages.append((stamps, np.asarray(weight, dtype=np.float64), shown, injunctive))
        self._dense.clear()

    def boost_wards(self, wards: np.ndarray, n_wards: int, strength: float) -> None:
        """In-ward ties of residents in `wards` weigh 1 + strength (community groups)."""
        if self.ward_boost is None:
            self.ward_boost = np.zeros(n_wards)
        self.ward_boost[wards] += strength
        self._dense.clear()

    def scale_influence(self, ids: np.ndarray, factor: float) -> None:
        """Residents `ids` weigh `factor` times as much in their neighbours' norms."""
        self.influence_terms.append((ids, float(factor)))
        self._dense.clear()

    def buffer(self, key: str, fill: float | bool, dtype: type = np.float64) -> np.ndarray:
        """An n-array set to `fill`, reused across steps: fresh pages for several arrays of
        a million residents every step cost more than the arithmetic done in them."""
        arr = self._pool.get(key)
        if arr is None or arr.dtype != dtype or arr.size != self.n:
            arr = self._pool[key] = np.empty(self.n, dtype=dtype)
        arr.fill(fill)
        self._pool[f"{key}:set"] = None  # its contents are the caller's: no sparse reset
        return arr

    def flag(self, channel: str, ids: np.ndarray) -> None:
        """Set residents `ids` in the dense `direct`/`locked` mask. The pooled mask is
        cleared where the last step set it rather than in full (unless that was more than
        an eighth of it): serving ambassadors are 1% of the residents, and clearing two
        n-sized masks every week was most of a quiet week's nudge time at 10^7."""
        arr = getattr(self, channel)
        marks_key = f"{channel}:set"
        if arr is None:
            arr = self._pool.get(channel)
            marks = self._pool.get(marks_key)
            if arr is None or arr.dtype != np.bool_ or arr.size != self.n:
                arr = self._pool[channel] = np.zeros(self.n, dtype=bool)
            elif marks is not None and len(marks) == 1 and marks[0] is ids:
                # the same array as last step alone (serving ambassadors): already set
                setattr(self, channel, arr)
                self._pool[marks_key] = [ids]
                return
            elif marks is None or sum(len(m) for m in marks) > self.n // 8:
                arr.fill(False)
            else:
                for m in marks:  # only these were set: the rest is still False
                    kernels.put(arr, m, False)
            self._pool[marks_key] = []
            setattr(self, channel, arr)
        kernels.put(arr, ids, True)
        marks = self._pool.get(marks_key)
        if marks is not None:
            marks.append(ids)

    # -- what the numpy engine and the per-agent path read -------------------------------
    def _sum(self, channel: str, ids: np.ndarray | None = None) -> np.ndarray | None:
        """The channel's terms added in nudge order, at residents `ids` or (None) as a dense
        array; None when no term writes the channel."""
        out = None
        for ch, stamps, table in self.terms:
            if ch != channel:
                continue
            if ids is None:  # dense: only the stamped carry a value
                if out is None:
                    out = np.zeros(self.n)
                hit = stamps.ids()
                step = stamps.step[hit]
            else:
                if out is None:
                    out = np.zeros(len(ids))
                step = stamps.step[ids]
                hit = step >= 0
                step = step[hit]
            out[hit] += table[self.t - step]
        return out

    def at(self, channel: str, ids: np.ndarray) -> np.ndarray | float:
        """Channel values of residents `ids` only, the same numbers as the dense array (for
        the few decisions the kernel leaves to the numpy rule)."""
        out = self._sum(channel, ids)
        return 0.0 if out is None else out

    def _additive(self, channel: str) -> np.ndarray | None:
        if channel not in self._dense:
            self._dense[channel] = self._sum(channel)
        return self._dense[channel]

    utility = property(lambda self: self._additive("utility"))
    lapse = property(lambda self: self._additive("lapse"))
    attitude = property(lambda self: self._additive("attitude"))
    cost_relief = property(lambda self: self._additive("cost_relief"))
    norm_salience = property(lambda self: self._additive("norm_salience"))

    @property
    def tie_boost(self) -> np.ndarray | None:
        """Extra weight of each resident's in-ward ties."""
        if self.ward_boost is None:
            return None
        if "tie_boost" not in self._dense:
            self._dense["tie_boost"] = self.ward_boost[self.ward]
        return self._dense["tie_boost"]

    @property
    def influence(self) -> np.ndarray | None:
        """Weight of each resident in neighbours' norms (None: everyone weighs 1)."""
        if not self.influence_terms:
            return None
        if "influence" not in self._dense:
            arr = np.ones(self.n)
            for ids, factor in self.influence_terms:
                arr[ids] *= factor
            self._dense["influence"] = arr
        return self._dense["influence"]

    @property
    def norm_messages(self) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """(weight per resident, shown rate per resident, injunctive) for each message."""
        if "norm_messages" in self._dense:
            return self._dense["norm_messages"]
        out = self._dense["norm_messages"] = []
        ward = self.ward
        for stamps, table, shown, injunctive in self.messages:
            if ward is None:
                raise ValueError("a norm message shows a rate per ward: Effects needs `ward`")
            weight, rate = np.zeros(self.n), np.zeros(self.n)
            ids = stamps.ids()
            step = stamps.step[ids]
            weight[ids] = table[self.t - step]
            rate[ids] = shown[step + 1, ward[ids]]
            out.append((weight, rate, injunctive))
        return out


# ---------------------------------------------------------------------------------------
# Specs: what a [[nudges]] table may write
# ---------------------------------------------------------------------------------------


class Targeting(Spec):
    """Whom a nudge is aimed at: filters first, then the top `count`/`share` by strategy."""

    strategy: Literal["random", "degree", "betweenness", "kcore", "community", "ward"] = Field(
        "random",
        description="ranking of eligible residents; 'ward' ranks by lowest ward adoption first",
    )
    count: Annotated[int, Field(ge=0)] | None = Field(None, description="how many to target")
    share: Probability | None = Field(None, description="share of eligible residents to target")
    wards: list[str] | None = Field(None, description="only residents of these wards")
    adopted: bool | None = Field(None, description="true: adopters only; false: non-adopters only")
    attitude_below: float | None = None
    attitude_above: float | None = None
    community_method: Literal[
        "auto", "leiden", "fast_louvain", "label_propagation", "greedy_modularity"
    ] = Field(
        "auto",
        description="'auto': igraph's Leiden up to 100,000 residents, fast Louvain above; "
        "'leiden': igraph's Leiden, seeded from the run's random stream (refused where its "
        "copy of the graph cannot fit in memory); 'fast_louvain': compiled Louvain with "
        "Leiden's refinement on the model's own ties, seeded from the run's stream; "
        "'label_propagation': older name for 'auto'; 'greedy_modularity': networkx "
        "Clauset-Newman-Moore, up to 20,000 residents",
    )
    betweenness_samples: Annotated[int, Field(ge=1)] = Field(
        256, description="source nodes sampled for betweenness on large graphs"
    )

    @model_validator(mode="after")
    def _count_or_share(self) -> Targeting:
        if self.count is not None and self.share is not None:
            raise ValueError(".share: give count or share, not both")
        return self


class NudgeBase(Spec):
    """Schedule, targeting, reach and cost: what every nudge has."""

    if TYPE_CHECKING:  # each registered kind declares `kind: Literal[...]` (registry.kind_of)
        kind: str

    label: str | None = Field(None, description="name shown in plots and tables")
    start: Annotated[int, Field(ge=1)] = Field(1, description="first step (week) it acts")
    end: Annotated[int, Field(ge=1)] | None = Field(
        None, description="first step it no longer acts (exclusive); default: end of the run"
    )
    duration: Annotated[int, Field(ge=1)] | None = Field(None, description="alternative to end")
    every: Annotated[int, Field(ge=1)] | None = Field(
        None, description="repeat the contact every this many steps; None = contact once"
    )
    targeting: Targeting = Field(default_factory=Targeting)
    reach: Probability = Field(1.0, description="share of targets actually contacted")
    cost_fixed: NonNegative = Field(0.0, description="£ paid once at the start")
    cost_per_contact: NonNegative = Field(0.0, description="£ per resident contacted")

    @model_validator(mode="after")
    def _end_or_duration(self) -> NudgeBase:
        if self.end is not None and self.duration is not None:
            raise ValueError(".duration: give end or duration, not both")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f".end: {self.end} is not after start ({self.start}); allowed: > start")
        return self

    def stop(self, steps: int) -> int:
        """First step after the active window (exclusive end)."""
        if self.end is not None:
            return self.end
        if self.duration is not None:
            return self.start + self.duration
        return steps + 1

    def contact_steps(self, steps: int) -> list[int]:
        """Steps at which targets are contacted."""
        stop = min(self.stop(steps), steps + 1)
        if self.every is None:
            return [self.start] if self.start < stop else []
        return list(range(self.start, stop, self.every))

    @property
    def name(self) -> str:
        return self.label or self.kind

    def window(self, steps: int) -> dict[str, Any]:
        """This nudge's row in a run's record (Result.nudge_windows) and figure: name, kind,
        its active steps [start, stop) cut to the run, and its contact steps. A function of
        the scenario alone, so the figure's rows can be drawn before the run ends."""
        return {"name": self.name, "kind": self.kind, "start": self.start,
                "stop": min(self.stop(steps), steps + 1), "contacts": self.contact_steps(steps)}


class NormFeedback(NudgeBase):
    """Show residents their ward's (or the borough's) adoption rate.

    Descriptive feedback pulls the perceived norm toward the shown rate in both directions
    (the boomerang, Schultz et al. 2007); an injunctive message removes the downward pull
    for adopters.
    """

    kind: Literal["norm_feedback"] = "norm_feedback"
    scope: Literal["ward", "borough"] = Field(
        "ward", description="reference group; closer groups work better (Goldstein et al. 2008)"
    )
    weight: Probability = Field(
        0.3, description="share of the perceived norm replaced by the shown rate (assumption)"
    )
    injunctive: bool = Field(False, description="add an approving message (Schultz et al. 2007)")
    shown: Probability | None = Field(
        None,
        description="a fixed rate to show instead of the measured one (e.g. 0.75 for "
        "'75% of guests reuse their towels', Goldstein et al. 2008); None = the real rate",
    )
    half_life: HalfLife = Field(
        4.0, description="weeks for the message's effect to halve (assumption); None = no decay"
    )


class Default(NudgeBase):
    """Opt-out enrolment: contacted non-adopters become adopters unless they opt out."""

    kind: Literal["default"] = "default"
    opt_out: Probability = Field(
        0.3, description="share of enrolled residents who opt out at once (assumption)"
    )
    lapse_reduction: NonNegative = Field(
        0.0,
        description="log-odds reduction of the lapse hazard of the households the default "
        "enrols, for the rest of the run: leaving a default takes an active switch "
        "(status-quo bias; Liebe, Gewinner & Diekmann 2021, Nature Human Behaviour: about "
        "80% still on a green default after 4 years); 0 = enrolled households lapse like "
        "any other adopter (assumption)",
    )

    @model_serializer(mode="wrap")
    def _stickiness_left_out_at_zero(self, handler: Any) -> Any:
        """At 0 the field is left out of a dump, so scenarios written (and run ids hashed)
        before it existed keep their text and their ids."""
        data = handler(self)
        if isinstance(data, dict) and self.lapse_reduction == 0.0:
            data.pop("lapse_reduction", None)
        return data


class Pledge(NudgeBase):
    """Public commitment: pledgers get a decaying push to adopt and a lower lapse hazard."""

    kind: Literal["pledge"] = "pledge"
    uptake: Probability = Field(0.1, description="share of contacted who pledge (assumption)")
    boost: float = Field(1.0, description="log-odds push to adopt at pledge time (assumption)")
    lapse_reduction: NonNegative = Field(
        1.0, description="log-odds reduction of lapsing at pledge time (assumption)"
    )
    half_life: HalfLife = Field(
        8.0, description="weeks for the pledge's effect to halve (assumption)"
    )


class Reminder(NudgeBase):
    """Periodic prompt (e.g. a bin-day text): a short-lived salience boost."""

    kind: Literal["reminder"] = "reminder"
    boost: float = Field(0.5, description="log-odds salience boost at contact (assumption)")
    half_life: HalfLife = Field(
        1.0, description="weeks for salience to halve (assumption)"
    )


class Incentive(NudgeBase):
    """Reward that lowers perceived cost while active; may crowd out motivation after."""

    kind: Literal["incentive"] = "incentive"
    cost_reduction: Probability = Field(
        0.5, description="share of perceived cost removed while active (assumption)"
    )
    cost_per_adopter: NonNegative = Field(
        0.0, description="£ paid per contacted adopter per step while active"
    )
    crowding_out: NonNegative = Field(
        0.0, description="log-odds loss of motivation once the incentive ends (assumption)"
    )
    crowding_half_life: HalfLife = Field(
        26.0, description="weeks for crowding-out to halve (assumption)"
    )


class Canvassing(NudgeBase):
    """Door-to-door conversation: an attitude boost and a direct chance of adopting."""

    kind: Literal["canvassing"] = "canvassing"
    attitude_boost: float = Field(0.5, description="attitude change at contact (assumption)")
    adopt_prob: Probability = Field(
        0.05, description="chance a contacted non-adopter adopts at once (assumption)"
    )
    half_life: HalfLife = Field(
        12.0, description="weeks for the attitude boost to halve (assumption)"
    )


class Ambassadors(NudgeBase):
    """Residents recruited as peer ambassadors: they adopt, do not lapse during their term,
    and their influence on neighbours is multiplied."""

    kind: Literal["ambassadors"] = "ambassadors"
    uptake: Probability = Field(1.0, description="share of approached residents who agree")
    influence: Annotated[float, Field(ge=0)] = Field(
        3.0, description="weight of an ambassador in neighbours' norm (assumption)"
    )


class CommunityPartnership(NudgeBase):
    """A time-limited community group in chosen wards: stronger in-ward ties and norms."""

    kind: Literal["community_partnership"] = "community_partnership"
    wards: list[str] = Field(..., min_length=1, description="wards where the group exists")
    tie_strength: NonNegative = Field(
        1.0, description="extra weight of in-ward ties while active (assumption)"
    )
    norm_salience: NonNegative = Field(
        0.5, description="relative increase of the norm's weight while active (assumption)"
    )


class Information(NudgeBase):
    """Leaflet campaign: a small attitude boost that decays."""

    kind: Literal["information"] = "information"
    attitude_boost: float = Field(0.2, description="attitude change at contact (assumption)")
    half_life: HalfLife = Field(
        4.0, description="weeks for the boost to halve (assumption)"
    )


def check_nudge_wards(spec: Any, index: int, names: list[str]) -> None:
    """Ward names in a nudge must exist: one check for wards the scenario defines and for
    wards read from a residents CSV or graph."""
    fields = [("targeting.wards", spec.targeting.wards or [])]
    if isinstance(getattr(spec, "wards", None), list):  # a kind's own wards (partnerships)
        fields.append(("wards", spec.wards))
    known = set(names)
    for field_name, wards in fields:
        unknown = [w for w in wards if w not in known]
        if unknown:
            raise ScenarioError(
                f"nudges[{index}].{field_name}: unknown ward(s) {unknown}; allowed: "
                f"{sorted(names)[:10]}{'…' if len(names) > 10 else ''}"
            )


# ---------------------------------------------------------------------------------------
# Targeting
# ---------------------------------------------------------------------------------------


def ward_table(targeting: Targeting, engine: Host) -> np.ndarray | None:
    """The targeted wards as a ward-indexed mask (None: no ward filter)."""
    if targeting.wards is None:
        return None
    pop = engine.population
    table = np.zeros(pop.n_wards, dtype=bool)
    table[[pop.ward_names.index(w) for w in targeting.wards]] = True
    return table


def filters(targeting: Targeting, engine: Host,
            wards: np.ndarray | None = None) -> np.ndarray | None:
    """Mask of residents who pass the targeting filters (and live in a ward `wards`, a
    ward-indexed mask, marks), on the state before this step; None when nothing filters.
    A ward is looked up per resident: np.isin over 10^7 residents and hundreds of wards
    took ~90 ms."""
    pop = engine.population
    table = ward_table(targeting, engine)
    if wards is not None:
        table = wards if table is None else table & wards
    mask = None if table is None else table[pop.ward]
    if targeting.adopted is not None:
        mask = _narrow(mask, engine.adopted == targeting.adopted)
    if targeting.attitude_below is not None:
        mask = _narrow(mask, pop.attitude < targeting.attitude_below)
    if targeting.attitude_above is not None:
        mask = _narrow(mask, pop.attitude > targeting.attitude_above)
    return mask


def _narrow(mask: np.ndarray | None, test: np.ndarray) -> np.ndarray:
    """mask & test, in place in mask (a fresh array of filters'), or test alone."""
    if mask is None:
        return test
    mask &= test
    return mask


def nonzero(mask: np.ndarray, dtype: type = np.int64) -> np.ndarray:
    """np.flatnonzero(mask) as `dtype`; int32 ids are found a chunk at a time, so no
    n-sized int64 array is made only to be narrowed (fresh pages cost ~3 ms per 10 MB on
    the shared machines, more than the scan)."""
    if np.dtype(dtype) == np.int64 or mask.size <= CHUNK:
        return np.flatnonzero(mask).astype(dtype, copy=False)
    out: np.ndarray = np.empty(np.count_nonzero(mask), dtype=dtype)
    at = 0
    for lo in range(0, mask.size, CHUNK):
        part = np.flatnonzero(mask[lo:lo + CHUNK])
        part += lo
        out[at:at + len(part)] = part
        at += len(part)
    return out


def strategy_scores(targeting: Targeting, engine: Host, stream: str) -> np.ndarray:
    """Higher score = targeted first. Network scores are computed once per run and cached."""
    return scores_at(targeting, engine, stream, None)


def scores_at(targeting: Targeting, engine: Host, stream: str,
              ids: np.ndarray | None) -> np.ndarray:
    """strategy_scores(...)[ids] (ids None: everyone), computed for `ids` alone where the
    score is per resident (random draws, ward rates): the same numbers, no n-sized pass."""
    strategy = targeting.strategy
    n = engine.population.n
    if strategy == "random":  # counter-based: resident i's draw does not depend on who else
        return engine.streams.uniform(f"{stream}:rank", 0, n if ids is None else ids)
    if strategy == "ward":
        rates = engine.ward_rates()
        ward = engine.population.ward
        return -rates[ward if ids is None else ward[ids]]
    key = (strategy, targeting.community_method, targeting.betweenness_samples)
    if key not in engine.score_cache:
        net, rng = engine.network, engine.streams.generator(f"score:{strategy}")
        if strategy == "degree":
            s = degree_scores(net)
        elif strategy == "betweenness":
            s = betweenness_scores(net, rng, samples=targeting.betweenness_samples)
        elif strategy == "kcore":
            s = kcore_scores(net)
        else:  # community: spread targets across communities, best-connected first in each
            labels = community_labels(net, targeting.community_method, rng)
            deg = degree_scores(net)
            order = np.lexsort((-deg, labels))  # by community, then degree descending
            rank = np.empty(net.n, dtype=np.int64)
            starts = np.searchsorted(labels[order], np.arange(labels.max() + 1))
            rank[order] = np.arange(net.n) - starts[labels[order]]
            # round-robin: every community's best before anyone's second; big communities first
            s = -(rank * (labels.max() + 1) + labels).astype(np.float64)
        engine.score_cache[key] = np.asarray(s, dtype=np.float64)
    cached = engine.score_cache[key]
    return cached if ids is None else cached[ids]


def take_count(targeting: Targeting, eligible_count: int) -> int | None:
    """How many of the eligible a count/share picks (None: all of them)."""
    if targeting.count is not None:
        return min(targeting.count, eligible_count)
    if targeting.share is not None:
        return min(round(targeting.share * eligible_count), eligible_count)
    return None


def select(targeting: Targeting, engine: Host, stream: str) -> np.ndarray:
    """Ids of targeted residents (sorted): filters, then top count/share by strategy."""
    mask = filters(targeting, engine)
    n = engine.population.n
    k = take_count(targeting, n if mask is None else int(np.count_nonzero(mask)))
    if mask is None:  # everyone is eligible: positions are ids, no id list to gather by
        if k is None:
            return np.arange(n)
        return np.sort(top_k(scores_at(targeting, engine, stream, None), None, k,
                             engine.streams, f"{stream}:tiebreak"))
    ids = np.flatnonzero(mask)
    if k is None:
        return ids
    scores = scores_at(targeting, engine, stream, ids)
    return np.sort(ids[top_k(scores, ids, k, engine.streams, f"{stream}:tiebreak")])


def top_k(scores: np.ndarray, ids: np.ndarray | None, k: int, streams: Streams,
          tiebreak_stream: str) -> np.ndarray:
    """Positions of the first k of `ids` (None: ids are the positions) ranked by score
    descending (NaN last), then by a uniform tiebreak descending, then by position (a
    stable lexsort of all of them).

    Only the candidates scoring at least the k-th score can be among the first k, so the
    stable lexsort runs on them alone (kept in position order, it ranks them exactly as
    the full sort does) and the tiebreak, counter-based per resident, is drawn for them
    alone: the same residents as the full sort at O(n) instead of O(n log n) (a 1% pick
    of 2.5e7 households: 18 s -> well under 1 s). The k-th score itself is found among
    the scores at or above a bound read off a strided sample (candidates), not by
    partitioning a negated copy of all n: 0.5 s -> ~30 ms for 10^5 of 10^7 (the bound
    only narrows the search; if fewer than k pass it, every score is searched)."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    pool = _above_bound(scores, k)
    if pool is None and not np.isnan(scores).any():  # all of them, every one a number
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]  # the k-th largest
        cand = np.flatnonzero(scores >= kth)
    else:
        if pool is None:
            pool = np.flatnonzero(~np.isnan(scores))  # NaN is never a candidate
        if len(pool) < k:  # fewer than k numbers: the full sort
            cand = np.arange(len(scores))
        else:
            part = scores[pool]
            kth = np.partition(part, len(part) - k)[len(part) - k]
            cand = pool[part >= kth]
    tiebreak = streams.uniform(tiebreak_stream, 0, cand if ids is None else ids[cand])
    order = np.lexsort((-tiebreak, -scores[cand]))  # highest score first, random among equals
    return cand[order[:k]]


def _above_bound(scores: np.ndarray, k: int) -> np.ndarray | None:
    """Positions (ascending) of the scores at or above a bound that at least k scores
    reach, the bound read off every m-th score with a margin; None when the scores are
    few or the sample cannot tell (the caller then searches all of them)."""
    m = len(scores)
    if m < 4 * CHUNK or k > m // 4:
        return None
    sample = scores[:: max(1, m // SAMPLE)]
    sample = sample[~np.isnan(sample)]
    # the sample's rank matching k, with a margin well beyond its sampling error
    r = int(np.ceil(len(sample) * k / m * 1.25)) + 64
    if r >= len(sample):
        return None
    bound = np.partition(sample, len(sample) - r)[len(sample) - r]
    pool = np.flatnonzero(scores >= bound)
    return pool if len(pool) >= k else None


# ---------------------------------------------------------------------------------------
# The base class
# ---------------------------------------------------------------------------------------


@dataclass
class StepLog:
    contacts: int = 0
    cost: float = 0.0


class Nudge:
    """Schedule + targeting + reach + cost. Subclasses implement `contact` and `act`."""

    #: True for kinds that call `fx.boost_wards`: the compiled path then keeps each
    #: resident's in-ward tie counts as well (kernels.Counts).
    boosts_ward_ties = False

    def __init__(self, spec, index: int, engine: Host) -> None:
        self.spec = spec
        self.index = index
        self.stream = f"nudge{index}:{spec.kind}"
        self.steps = engine.steps
        self.start = spec.start
        self.stop = spec.stop(engine.steps)
        self.contact_at = set(spec.contact_steps(engine.steps))
        self.n = engine.population.n
        #: who can be reached at all (None: everyone, reach 1; see `reachable`)
        self._reachable = reach_mask(engine.streams, f"{self.stream}:reach", self.n, spec.reach)
        self.contacts = Stamps(engine.stamp_book)  # step of each resident's latest contact
        targeting = spec.targeting
        # targets that depend only on fixed traits and scores are chosen once and reused
        self._static = targeting.adopted is None and targeting.strategy != "ward"
        self._targets: np.ndarray | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def active(self, t: int) -> bool:
        return self.start <= t < self.stop

    @property
    def reachable(self) -> np.ndarray:
        """Mask of residents this nudge can reach (trial designs narrow it in place, with
        `&=`, before the run)."""
        if self._reachable is None:
            self._reachable = np.ones(self.n, dtype=bool)
        return self._reachable

    @reachable.setter
    def reachable(self, mask: np.ndarray) -> None:
        self._reachable = mask

    def ward_filter(self) -> np.ndarray | None:
        """A ward-indexed mask that every target must live in (None: any ward)."""
        return None

    def targets(self, engine: Host) -> np.ndarray:
        """Ids (ascending) of the residents contacted at a contact step: select()'s pick,
        then those reachable and in `ward_filter`'s wards. Without a count or share the
        pick is every eligible resident, and the filters, the reach and the wards are
        combined in one mask before any id list is made (the old all-ids list and its
        gathers cost 70-200 ms a nudge at 10^7)."""
        if self._targets is not None:
            return self._targets
        targeting = self.spec.targeting
        wards = self.ward_filter()
        dtype = np.int32 if self._static else np.int64  # kept for the run: int32 halves it
        if targeting.count is None and targeting.share is None:
            mask = filters(targeting, engine, wards)
            if mask is None:
                mask = self._reachable
            elif self._reachable is not None:
                mask &= self._reachable
            ids = np.arange(self.n, dtype=dtype) if mask is None else nonzero(mask, dtype)
        else:
            ids = select(targeting, engine, self.stream)
            if self._reachable is not None:
                ids = ids[self._reachable[ids]]
            if wards is not None:
                ids = ids[wards[engine.population.ward[ids]]]
            ids = ids.astype(dtype, copy=False)
        if self._static:
            self._targets = ids
        return ids

    def step(self, t: int, engine: Host, fx: Effects) -> StepLog:
        log = StepLog()
        if t == self.start:
            log.cost += self.spec.cost_fixed
        if t in self.contact_at:
            ids = self.targets(engine)
            self.contacts.mark(ids, t)
            self.contact(t, ids, engine, fx)
            log.contacts = len(ids)
            log.cost += len(ids) * self.spec.cost_per_contact
        self.act(t, engine, fx)
        return log

    def contact(self, t: int, ids: np.ndarray, engine: Host, fx: Effects) -> None:
        """What happens to residents at the moment they are contacted."""

    def act(self, t: int, engine: Host, fx: Effects) -> None:
        """Effects that persist between contacts (decaying boosts, active windows)."""

    def settle(self, t: int, engine: Host) -> float:
        """Cost that depends on this step's outcome (e.g. incentive payments)."""
        return 0.0

    def contacted(self) -> np.ndarray:
        return self.contacts.ids()

    def lasting(self, t: int, half_life: float | None) -> np.ndarray | None:
        """Share of a contact's effect left after 0..t steps, or None once it is over (an
        effect without a half-life lasts while the nudge is active)."""
        if half_life is None and not self.active(t):
            return None
        return decay_table(t, half_life)


# ---------------------------------------------------------------------------------------
# The nine kinds
# ---------------------------------------------------------------------------------------


class NormFeedbackNudge(Nudge):
    """Shown rate replaces part of the perceived norm; boomerang unless injunctive."""

    spec: NormFeedback

    def __init__(self, spec, index, engine) -> None:
        super().__init__(spec, index, engine)
        # the rate shown at each contact step, by ward: row stamp + 1 (row 0: never shown).
        # A resident sees what was shown at their latest contact; no per-resident copy.
        self.shown = np.zeros((engine.steps + 2, engine.population.n_wards))

    def contact(self, t, ids, engine, fx) -> None:
        if self.spec.shown is not None:
            self.shown[t + 1] = self.spec.shown
        elif self.spec.scope == "ward":
            self.shown[t + 1] = engine.ward_rates()
        else:
            self.shown[t + 1] = engine.adoption_rate()

    def act(self, t, engine, fx) -> None:
        left = self.lasting(t, self.spec.half_life)
        if left is not None:
            fx.message(self.contacts, self.spec.weight * left, self.shown, self.spec.injunctive)


class DefaultNudge(Nudge):
    """Opt-out enrolment of contacted non-adopters; enrolled households may lapse less
    (status quo)."""

    spec: Default

    def __init__(self, spec, index, engine) -> None:
        super().__init__(spec, index, engine)
        # only a sticky default keeps a stamp row: at 0 the run is as it always was
        self.enrolled = Stamps(engine.stamp_book) if spec.lapse_reduction > 0 else None

    def contact(self, t, ids, engine, fx) -> None:
        ids = ids[~engine.adopted[ids]]
        stays = engine.streams.uniform(f"{self.stream}:opt_out", t, ids) >= self.spec.opt_out
        fx.flag("direct", ids[stays])
        if self.enrolled is not None:
            self.enrolled.mark(ids[stays], t)

    def act(self, t, engine, fx) -> None:
        if self.enrolled is not None:  # no decay: the status quo holds for the whole run
            fx.add("lapse", self.enrolled, -self.spec.lapse_reduction)


class PledgeNudge(Nudge):
    """Pledgers get a decaying push to adopt and protection against lapsing."""

    spec: Pledge

    def __init__(self, spec, index, engine) -> None:
        super().__init__(spec, index, engine)
        self.pledges = Stamps(engine.stamp_book)

    def contact(self, t, ids, engine, fx) -> None:
        takes = engine.streams.uniform(f"{self.stream}:uptake", t, ids) < self.spec.uptake
        self.pledges.mark(ids[takes], t)

    def act(self, t, engine, fx) -> None:
        left = decay_table(t, self.spec.half_life)
        fx.add("utility", self.pledges, self.spec.boost * left)
        fx.add("lapse", self.pledges, -self.spec.lapse_reduction * left)


class ReminderNudge(Nudge):
    """Salience: a push to adopt and to keep going, halving every half_life steps."""

    spec: Reminder

    def act(self, t, engine, fx) -> None:
        left = self.lasting(t, self.spec.half_life)
        if left is not None:
            fx.add("utility", self.contacts, self.spec.boost * left)
            fx.add("lapse", self.contacts, -self.spec.boost * left)


class IncentiveNudge(Nudge):
    """Lower perceived cost for contacted residents while active; crowding-out afterwards."""

    spec: Incentive

    def act(self, t, engine, fx) -> None:
        if self.active(t):
            fx.add("cost_relief", self.contacts, self.spec.cost_reduction)
        elif self.spec.crowding_out > 0:
            left = decay(t - self.stop, self.spec.crowding_half_life)
            fx.add("attitude", self.contacts, -self.spec.crowding_out * left)

    def settle(self, t, engine) -> float:
        if not self.active(t) or self.spec.cost_per_adopter == 0:
            return 0.0
        ids = self.contacted()
        return float(engine.adopted[ids].sum()) * self.spec.cost_per_adopter


class CanvassingNudge(Nudge):
    """Conversation at the door: direct adoption chance plus a decaying attitude boost."""

    spec: Canvassing

    def contact(self, t, ids, engine, fx) -> None:
        ids = ids[~engine.adopted[ids]]
        yes = engine.streams.uniform(f"{self.stream}:adopt", t, ids) < self.spec.adopt_prob
        fx.flag("direct", ids[yes])

    def act(self, t, engine, fx) -> None:
        left = self.lasting(t, self.spec.half_life)
        if left is not None:
            fx.add("attitude", self.contacts, self.spec.attitude_boost * left)


class AmbassadorsNudge(Nudge):
    """Recruited ambassadors adopt, cannot lapse during their term, and weigh more."""

    spec: Ambassadors

    def __init__(self, spec, index, engine) -> None:
        super().__init__(spec, index, engine)
        self.recruited = np.zeros(engine.population.n, dtype=bool)
        self._ids = np.zeros(0, dtype=np.int64)  # flatnonzero(recruited), kept in step

    def contact(self, t, ids, engine, fx) -> None:
        agree = engine.streams.uniform(f"{self.stream}:uptake", t, ids) < self.spec.uptake
        self.recruited[ids[agree]] = True
        self._ids = np.flatnonzero(self.recruited)

    def act(self, t, engine, fx) -> None:
        if not self.active(t):
            return
        ids = self._ids
        if len(ids):
            fx.flag("direct", ids)
            fx.flag("locked", ids)
            fx.scale_influence(ids, self.spec.influence)

    def serving(self) -> np.ndarray:
        """Ids of recruited ambassadors (they serve while the nudge is active)."""
        return self._ids

    def current(self, t: int) -> np.ndarray:
        """Mask of ambassadors serving at step t."""
        return self.recruited if self.active(t) else np.zeros_like(self.recruited)


class CommunityPartnershipNudge(Nudge):
    """A group in chosen wards: stronger in-ward ties and a more salient norm while it lasts."""

    spec: CommunityPartnership
    boosts_ward_ties = True

    def __init__(self, spec, index, engine) -> None:
        super().__init__(spec, index, engine)
        pop = engine.population
        wanted = [pop.ward_names.index(w) for w in spec.wards]
        self.wards = np.unique(np.array(wanted, dtype=np.int64))
        # the group's wards as a ward-indexed mask: no n-sized member list to keep
        self.in_group = np.zeros(pop.n_wards, dtype=bool)
        self.in_group[self.wards] = True

    def ward_filter(self) -> np.ndarray:
        """Only residents of the group's wards are contacted: the base targets living there,
        in the same (ascending) order (a ward lookup per resident: intersect1d's two
        hash-uniques cost 51 s at 2.5e7)."""
        return self.in_group

    def act(self, t, engine, fx) -> None:
        if not self.active(t):
            return
        fx.boost_wards(self.wards, engine.population.n_wards, self.spec.tie_strength)
        fx.add("norm_salience", self.contacts, self.spec.norm_salience)


class InformationNudge(Nudge):
    """Leaflet: a small attitude boost that decays."""

    spec: Information

    def act(self, t, engine, fx) -> None:
        left = self.lasting(t, self.spec.half_life)
        if left is not None:
            fx.add("attitude", self.contacts, self.spec.attitude_boost * left)


@dataclass(frozen=True)
class NudgeKind:
    """One nudge kind (registered in `NUDGES`): its spec and the `Nudge` subclass that
    acts on residents."""

    spec: type[NudgeBase]
    nudge: type[Nudge]

    @property
    def kind(self) -> str:
        return kind_of(self.spec)


for _spec, _nudge in (
    (NormFeedback, NormFeedbackNudge),
    (Default, DefaultNudge),
    (Pledge, PledgeNudge),
    (Reminder, ReminderNudge),
    (Incentive, IncentiveNudge),
    (Canvassing, CanvassingNudge),
    (Ambassadors, AmbassadorsNudge),
    (CommunityPartnership, CommunityPartnershipNudge),
    (Information, InformationNudge),
):
    NUDGES.register(NudgeKind(_spec, _nudge))


def make_nudge(spec: Any, index: int, engine: Host) -> Nudge:
    check_nudge_wards(spec, index, engine.population.ward_names)
    return NUDGES[spec.kind].nudge(spec, index, engine)
