"""What a spot-check proves: the catch probability against the formula and a seeded simulation,
and the budgeted choice of segments (largest recorded update plus random, within the budget)."""

from __future__ import annotations

import math

import pytest

from repro.audits.assurance import assess, catch_probability, catch_table, segments_touched, simulate
from repro.audits.report import Segment
from repro.audits.selection import CostModel, parse_budget, select_within
from repro.errors import UsageError


def _even(n: int, length: int = 10) -> list[Segment]:
    return [Segment(start=i * length, end=(i + 1) * length) for i in range(n)]


def test_the_catch_probability_is_one_minus_the_chance_of_missing_every_fabricated_segment() -> None:
    assert catch_probability(30, 3, 6) == pytest.approx(1 - math.comb(24, 3) / math.comb(30, 3))
    assert catch_probability(10, 1, 4) == pytest.approx(0.4)
    assert catch_probability(10, 0, 4) == 0.0 and catch_probability(10, 3, 0) == 0.0
    assert catch_probability(10, 3, 8) == 1.0  # 8 fabricated of 10: any 3 include one
    with pytest.raises(ValueError):
        catch_probability(3, 4, 1)


@pytest.mark.parametrize(("pool", "picks", "touched"), [(30, 3, 6), (10, 1, 4), (10, 2, 4), (20, 5, 2), (9, 4, 3)])
def test_the_formula_matches_a_seeded_simulation(pool: int, picks: int, touched: int) -> None:
    trials = 20_000
    estimate = simulate([10] * pool, picks, range(touched), trials, seed=pool * 100 + picks)
    exact = catch_probability(pool, picks, touched)
    sigma = math.sqrt(exact * (1 - exact) / trials)
    assert abs(estimate - exact) <= 4 * sigma + 1e-12


def test_fabricating_a_share_of_steps_touches_the_fewest_segments_that_hold_it() -> None:
    assert segments_touched([30] * 10, 100) == 4  # a third of 300 steps in 30-step segments
    assert segments_touched([50, 10, 10, 10], 55) == 2  # the forger uses the longest first
    assert segments_touched([10, 10], 25) == 3  # more than the pool holds: beyond it
    table = catch_table([30] * 10, 1, 300, [0.2, 1 / 3])
    assert [c.segments_touched for c in table] == [2, 4]
    assert [c.probability for c in table] == pytest.approx([0.2, 0.4])


def test_the_statement_counts_only_random_picks_against_the_pool() -> None:
    segments = _even(31)
    largest = [segments[5]]
    drawn = [segments[1], segments[9], segments[20]]
    a = assess(segments, largest, drawn, seed=4)
    # 20% of 310 steps = 62 steps = 7 segments of 10, in the pool of 30 left after the largest pick
    expected = 1 - math.comb(23, 3) / math.comb(30, 3)
    head = next(c for c in a.catch if c.fraction == 0.2)
    assert head.segments_touched == 7 and head.probability == pytest.approx(expected)
    assert a.statement == ("a run with ≥ 20% of its steps fabricated would have been caught with probability "
                           f"≥ {math.floor(expected * 100) / 100:.2f} (3 random segments of 30)")
    assert a.pool == 30 and a.steps_replayed == 40 and a.fraction_of_steps == pytest.approx(40 / 310)
    assert any("not replayed" in b for b in a.blind_spots)
    # 1 - 0.8 in floats is 0.19999999999999996: still stated as 0.20, not 0.19
    one = assess(_even(10), [], [_even(10)[3]], seed=0)
    assert one.statement.endswith("probability ≥ 0.20 (1 random segment of 10)")


def test_budgets_are_a_share_or_a_time_and_anything_else_is_refused() -> None:
    assert parse_budget("10%").in_seconds(200.0) == pytest.approx(20.0)
    assert parse_budget("5m").in_seconds(1.0) == 300.0 and parse_budget("90s").seconds == 90.0
    assert parse_budget("2h").seconds == 7200.0
    for bad in ("ten", "0%", "150%", "5", "-3m", "5 minutes"):
        with pytest.raises(UsageError, match="--budget"):
            parse_budget(bad)


def _cost(n: int, step: float = 1.0, startup: float = 5.0) -> CostModel:
    return CostModel(startup=startup, step_seconds=tuple([step] * (n * 10)), validation_pass=0.0,
                     validation_steps=frozenset(), per_segment=1.0)


def test_the_selection_fits_the_budget_mixes_largest_updates_and_random_ones_and_repeats_from_its_seed() -> None:
    segments = _even(30)
    cost = _cost(30)  # each segment 10 s + 1 s; one start-up of 5 s
    norms = {s: float(i) for i, s in enumerate(segments)}  # the last segments moved most
    picked = select_within(segments, cost, 5 + 6 * 11, seed=3, norms=norms)
    assert len(picked.segments) == 6 and picked.estimated_seconds == pytest.approx(71.0)
    assert picked.largest == [segments[28], segments[29]]  # a third of what fits, in run order
    assert len(picked.drawn) == 4 and not set(picked.drawn) & set(picked.largest)
    assert picked == select_within(segments, cost, 71, seed=3, norms=norms)
    draws = {tuple(select_within(segments, cost, 71, seed=s, norms=norms).drawn) for s in range(20)}
    assert len(draws) > 1
    unnormed = select_within(segments, cost, 71, seed=3)
    assert unnormed.largest == [] and len(unnormed.drawn) == 6


def test_random_picks_are_uniform_over_the_pool_even_where_segments_cost_more() -> None:
    segments = _even(10)
    # a validation pass of 8 s ends segments 3 and 9: they cost 19 s, the others 11 s
    cost = CostModel(startup=5.0, step_seconds=tuple([1.0] * 100), validation_pass=8.0,
                     validation_steps=frozenset({30, 90}), per_segment=1.0)
    assert select_within(segments, cost, 5 + 19 + 19, seed=0).estimated_seconds <= 43
    assert len(select_within(segments, cost, 5 + 19 + 19, seed=0).drawn) == 2
    # 41 s fits two cheap segments but not two costly ones: one draw, so that each is as likely
    assert len(select_within(segments, cost, 41, seed=0).drawn) == 1
    hits = [0] * 10
    for seed in range(4000):
        for s in select_within(segments, cost, 43, seed=seed).drawn:
            hits[segments.index(s)] += 1
    assert all(abs(h / 4000 - 0.2) < 0.03 for h in hits)


def test_a_budget_that_fits_no_segment_is_refused_with_what_would_fit() -> None:
    with pytest.raises(UsageError, match=r"does not fit one segment.*needs about 16 s"):
        select_within(_even(5), _cost(5), 15.0, seed=0)


def test_a_budget_with_a_count_of_segments_or_steps_is_a_usage_error(tmp_path, capsys) -> None:
    from repro.cli import main

    manifest = str(tmp_path / "run.json")
    assert main(["audit", manifest, "--budget", "10%", "--segments", "2"]) == 2
    assert main(["audit", manifest, "--budget", "10%", "--steps", "5"]) == 2
    assert main(["audit", manifest, "--budget", "ten percent"]) == 2
    assert "--budget 'ten percent'" in capsys.readouterr().err
