"""Rollback tokens of a tree (``generate_pipeline_token``), as the original gives them."""

from __future__ import annotations

from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
    build_tree,
    generate_pipeline_token,
)


def act() -> ServiceActivity:
    return ServiceActivity(component_code="echo")


def test_a_line_shares_one_token_and_every_node_has_one() -> None:
    s, a, b, e = EmptyStartEvent(), act(), act(), EmptyEndEvent()
    s.extend(a).extend(b).extend(e)
    tokens = generate_pipeline_token(build_tree(s))
    assert set(tokens) == {s.id, a.id, b.id, e.id}
    assert len(set(tokens.values())) == 1
    token = next(iter(tokens.values()))
    assert token.startswith("t")
    assert len(token) == 33


def test_parallel_branches_get_their_own_and_the_converge_the_outer_one() -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    left, right, after = act(), act(), act()
    s.extend(pg)
    pg.extend(left).extend(cg)
    pg.extend(right).extend(cg)
    cg.extend(after).extend(EmptyEndEvent())
    tokens = generate_pipeline_token(build_tree(s))
    outer = tokens[s.id]
    assert tokens[pg.id] == tokens[cg.id] == tokens[after.id] == outer
    assert len({outer, tokens[left.id], tokens[right.id]}) == 3


def test_exclusive_branches_share_the_token_even_with_a_loop_back() -> None:
    s, a, xg, cg = EmptyStartEvent(), act(), ExclusiveGateway(), ConvergeGateway()
    yes, no = act(), act()
    s.extend(a).extend(xg)
    xg.extend(yes).extend(cg)
    xg.extend(no).extend(a)  # back to a: the loop is cut, not walked forever
    xg.add_condition(0, "1 == 1")
    xg.add_condition(1, "1 == 0")
    cg.extend(EmptyEndEvent())
    tokens = generate_pipeline_token(build_tree(s))
    assert len({tokens[n.id] for n in (s, a, xg, yes, no, cg)}) == 1


def test_a_subprocess_inside_gets_a_fresh_token() -> None:
    inner_start, inner = EmptyStartEvent(), act()
    inner_start.extend(inner).extend(EmptyEndEvent())
    sub = SubProcess(start=inner_start)
    s, after = EmptyStartEvent(), act()
    s.extend(sub).extend(after).extend(EmptyEndEvent())
    tokens = generate_pipeline_token(build_tree(s))
    assert tokens[sub.id] == tokens[after.id] == tokens[s.id]
    assert tokens[inner.id] == tokens[inner_start.id] != tokens[s.id]
