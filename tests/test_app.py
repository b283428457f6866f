"""The browser page without a browser: ten seeded steps, the figures, the levers, the cached
layout and `nudgesim viz`'s checks (as Mesa's own examples test their apps)."""

from __future__ import annotations

import asyncio
import re
import socket

import numpy as np
import pytest
import solara

import nudgesim as ns
from nudgesim import cli
from nudgesim.engine import no_campaign
from nudgesim.errors import UsageError
from nudgesim.scenario import Ambassadors, Pledge, Scenario
from nudgesim.viz import figures, levers, page, server

SMALL_TOWN = str(levers.DEFAULT_SCENARIO)
BOROUGH = str(levers.SCENARIO_DIR / "borough.toml")


def test_ten_seeded_steps_are_reproducible_and_draw():
    a, b = levers.make_model(rng=5), levers.make_model(rng=5)
    for _ in range(10):
        a.step()
        b.step()
    assert a.engine.log == b.engine.log and a.t == 10 and a.nudge_scenario.seed == 5
    assert figures.title(a) == "small_town: week 10 of 52"
    for frame in (figures.graph_frame(a)[0], figures.ward_frame(a), figures.adoption_frame(a),
                  figures.cost_frame(a)):
        assert frame.image.startswith("data:image/png;base64,") and len(frame.image) > 10_000
        left, top, width, height = frame.box
        assert 0 <= left < left + width <= 1 and 0 <= top < top + height <= 1
    curve = figures.adoption_overlay(a, figures.adoption_frame(a))
    assert len(curve["lines"][-1]["x"]) == 11 and len(curve["bands"]) == 1
    # the no-campaign twin steps alongside, on the same households and draws, and is
    # drawn dashed under the campaign's curve
    twin = ns.simulate(no_campaign(a.nudge_scenario))
    assert a.twin.t == 10 and a.twin.log["adopters"] == twin.timeseries["adopters"][:11].tolist()
    line, no_line = curve["lines"][-1], curve["lines"][-2]
    assert no_line["dash"] and no_line["color"] == figures.TWIN_COLOUR
    assert no_line["x"] == line["x"] and no_line["y"][0] == line["y"][0]  # same step 0
    gap = np.array(a.engine.log["adopters"]) - np.array(a.twin.log["adopters"])
    assert (np.sign(np.array(no_line["y"]) - np.array(line["y"])) == np.sign(gap)).all()
    extra = a.engine.log["adopters"][-1] - a.twin.log["adopters"][-1]
    assert f"{extra:+,} households" in page.summary_html(a)
    assert len(figures.cost_overlay(a, figures.cost_frame(a))["lines"]) >= 2
    assert "Week 10 of 52" in page.summary_html(a)
    for component in page.COMPONENTS:
        assert component(a, a.t) is not None


def html_texts(rc) -> list[str]:
    return [w.unsafe_innerHTML for w in rc.find(solara.widgets.HTML).widgets]


def test_the_page_renders_three_canvases_and_a_step_sends_codes_not_pictures(monkeypatch):
    import ipywidgets
    from mesa.visualization.utils import force_update

    made = []
    monkeypatch.setattr(page, "make_model", lambda: made.append(levers.VizModel()) or made[-1])
    box, rc = solara.render(page.Page(), handle_error=False)
    try:
        canvases = rc.find(page.PlotCanvas).widgets
        assert len(canvases) == 3
        graph = next(c for c in canvases if c.codes)
        (model,) = made
        images = [c.image for c in canvases]
        codes, marks = graph.codes, [c.marks for c in canvases]
        created = []
        ipywidgets.Widget.on_widget_constructed(lambda w: created.append(type(w).__name__))
        for _ in range(3):
            model.step()
            force_update()  # what Mesa's Step and Play do
        assert [c.image for c in canvases] == images  # no picture redrawn
        assert len(graph.codes) == model.engine.n and graph.codes != codes
        assert graph.codes == figures.encode_codes(model.state_codes())
        assert [c.marks for c in canvases] != marks
        assert created == []  # every component updates its widget in place
        assert any("Week 3 of 52" in text for text in html_texts(rc))
    finally:
        ipywidgets.Widget._widget_construction_callback = None
        rc.close()


def test_y_ticks_cover_the_data_and_sit_on_the_axis():
    m = levers.make_model(rng=1)
    frame = figures.cost_frame(m)
    hi, marks = figures.y_axis(frame, 6_914.0, 1.0, "£{:,.{d}f}")
    labels = [t["text"] for t in marks["texts"]]
    assert labels[0] == "£0" and hi >= 6_914 * figures.HEADROOM and labels[-1] == f"£{hi:,.0f}"
    left, top, width, height = frame.box
    assert min(t["y"] for t in marks["texts"]) == pytest.approx(top, abs=1e-4)
    assert max(t["y"] for t in marks["texts"]) == pytest.approx(top + height, abs=1e-4)
    assert all(t["x"] < left for t in marks["texts"])
    _, small = figures.y_axis(frame, 0.0, 1.0, "{:,.{d}f}", side="right")
    assert [t["text"] for t in small["texts"]][:2] == ["0.0", "0.2"]
    assert all(t["x"] > left + width for t in small["texts"])


def test_codes_are_one_digit_per_resident():
    codes = np.array([0, 1, 2, 3, 3, 0])
    assert figures.encode_codes(codes) == "012330"


def test_the_summary_escapes_what_the_files_say():
    m = levers.make_model(rng=1)
    m.notes = ["<script>alert(1)</script>"]
    text = page.summary_html(m)
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_the_initial_model_is_the_file_as_written():
    for path in (SMALL_TOWN, BOROUGH):
        base = Scenario.from_toml(path)
        levered, notes = levers.apply_levers(base, levers.file_levers(base))
        assert levered.to_dict() == base.to_dict() and notes == []


def test_levers_remove_change_and_add_nudges():
    base = Scenario.from_toml(SMALL_TOWN)
    sc, _ = levers.apply_levers(base, {"pledge_uptake": 0.0, "ambassadors": 40,
                                    "ambassador_strategy": "kcore", "norm_reach": 0.3,
                                    "injunctive": False})
    assert not any(isinstance(n, Pledge) for n in sc.nudges)
    amb = next(n for n in sc.nudges if isinstance(n, Ambassadors))
    assert (amb.targeting.count, amb.targeting.strategy) == (40, "kcore")
    nf = next(n for n in sc.nudges if n.kind == "norm_feedback")
    assert (nf.reach, nf.injunctive) == (0.3, False)
    borough = Scenario.from_toml(BOROUGH)  # has no pledge: the lever adds small_town's
    sc, _ = levers.apply_levers(borough, {"pledge_uptake": 0.4})
    pledge = next(n for n in sc.nudges if isinstance(n, Pledge))
    assert pledge.uptake == 0.4 and pledge.label == "doorstep pledge"
    sc, _ = levers.apply_levers(borough, {"population": "500", "network": "watts_strogatz"})
    assert sc.population.size == 500 and sc.network.kind == "watts_strogatz"


def test_viz_model_uses_the_chosen_file_and_reports_rejected_levers():
    m = levers.VizModel(scenario_file="borough.toml", population="1000")
    assert m.nudge_scenario.name == "borough" and m.engine.n == 1000
    m = levers.VizModel(population="250", network="ring")  # not a network kind: rejected
    assert m.notes and "levers not applied" in m.notes[0] and m.engine.n == 1000


def test_layout_and_graph_picture_are_computed_once_per_graph(monkeypatch):
    m = levers.make_model(rng=2)
    pos, segments = figures.layout(m)
    assert pos.shape == (m.engine.n, 2) and np.isfinite(pos).all()
    assert len(segments) == m.engine.network.n_ties
    frame, xy = figures.graph_frame(m)
    xy = np.array(xy.split(","), float).reshape(-1, 2)
    assert xy.shape == (m.engine.n, 2) and (0 <= xy).all() and (xy <= 1).all()

    def fail(*args, **kwargs):
        raise AssertionError("recomputed")

    monkeypatch.setattr(figures.nx, "spring_layout", fail)
    monkeypatch.setattr(figures, "_frame", fail)
    same_graph = levers.make_model(rng=2)
    for _ in range(3):
        same_graph.step()
        assert figures.graph_frame(same_graph)[0] is frame
    assert figures.layout(same_graph)[0] is pos


def test_ward_view_above_the_graph_limit(monkeypatch):
    monkeypatch.setattr(page, "GRAPH_LIMIT", 100)
    m = levers.make_model(rng=3)
    m.step()
    assert page.SpaceView(m, m.t) is not None
    marks = figures.ward_overlay(m, figures.ward_frame(m))
    assert len(marks["rects"]) == len(marks["lines"]) == m.engine.population.n_wards
    box, rc = solara.render(page.Page(), handle_error=False)
    try:
        assert len(rc.find(page.PlotCanvas).widgets) == 3
        assert any("adoption by ward" in text for text in html_texts(rc))
    finally:
        rc.close()


def test_viz_refuses_a_missing_or_bad_scenario_before_serving(tmp_path, capsys):
    assert cli.main(["viz", str(tmp_path / "missing.toml")]) == 2
    assert "scenario file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = 'many'\n")
    assert cli.main(["viz", str(bad)]) == 2
    assert "steps" in capsys.readouterr().err


def test_viz_refuses_a_busy_port(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert cli.main(["viz", SMALL_TOWN, "--port", str(port)]) == 2
    assert "--port" in capsys.readouterr().err


def test_viz_answers_loopback_names_and_the_given_host_only():
    assert server.allowed_hosts("127.0.0.1", 8765) == {
        "127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    hosts = server.allowed_hosts("0.0.0.0", 80, ["MyBox.local", "[fe80::1]"])
    assert {"0.0.0.0:80", "0.0.0.0", "mybox.local:80", "mybox.local", "[fe80::1]:80",
            "localhost"} <= hosts
    assert "[::1]:8765" in server.allowed_hosts("::1", 8765)


def test_viz_refuses_a_name_that_is_not_a_host(capsys):
    for bad in ("*", "evil.example.com:80", "abc:80", "a b", "", "x/y"):
        with pytest.raises(UsageError, match=f"^--allow-host: {re.escape(repr(bad))} is not"):
            server.allowed_hosts("127.0.0.1", 8765, [bad])
    assert cli.main(["viz", SMALL_TOWN, "--allow-host", "*"]) == 2
    assert "--allow-host: '*' is not a host name" in capsys.readouterr().err


def _asgi(middleware: server.TrustedHosts, kind: str, host: bytes | None) -> list[dict]:
    """The messages `middleware` sends for one request whose Host header is `host`."""
    sent: list[dict] = []
    headers = [] if host is None else [(b"host", host)]

    async def receive():
        return {"type": "websocket.connect"} if kind == "websocket" else {"type": "http.request"}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": kind, "headers": headers}, receive, send))
    return sent


def test_trusted_hosts_refuses_other_host_headers_before_the_app_sees_them():
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope["type"])
        await send({"type": "ok"})

    guard = server.TrustedHosts(inner, server.allowed_hosts("127.0.0.1", 8765))
    assert _asgi(guard, "http", b"127.0.0.1:8765") == [{"type": "ok"}]
    assert _asgi(guard, "websocket", b"LOCALHOST:8765") == [{"type": "ok"}]
    assert _asgi(guard, "lifespan", None) == [{"type": "ok"}]
    for host in (b"evil.example.com", b"evil.example.com:8765", b"127.0.0.1", b"localhost:80",
                 b"127.0.0.1:8765.evil.example.com", None):
        start = _asgi(guard, "http", host)[0]
        assert (start["type"], start["status"]) == ("http.response.start", 400), host
        assert _asgi(guard, "websocket", host) == [{"type": "websocket.close", "code": 1008}]
    assert seen == ["http", "websocket", "lifespan"]


@pytest.fixture
def geo_town(tmp_path, monkeypatch):
    """The page started on small_town.toml with a `[geography]` table: its eight wards as
    1 km boxes, four to a row, in a GeoJSON file (test_maps.boxes)."""
    from test_maps import boxes

    names = Scenario.from_toml(SMALL_TOWN).population.ward_names()
    boundaries = tmp_path / "wards.geojson"
    boxes(names).reset_index(names="name").to_crs(4326).to_file(boundaries)
    path = tmp_path / "town_geo.toml"
    path.write_text(open(SMALL_TOWN).read() + '\n[geography]\nboundaries = "wards.geojson"\n')
    monkeypatch.setenv(levers.ENV_SCENARIO, str(path))
    return names


def test_the_map_view_places_each_ward_and_recolours_it(geo_town):
    import json

    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    m = levers.make_model(rng=4)
    assert figures.has_map(m) and not figures.has_map(levers.VizModel(scenario_file=
                                                                      "small_town.toml"))
    frame, shapes, labels = figures.map_frame(m)
    shapes = json.loads(shapes)
    assert sorted(s["ward"] for s in shapes) == list(range(8))
    # boxes: four corners (closed ring of five points), inside the picture; the first row
    # of wards (Abbey..Docks, south) lies below the second and each row runs west to east
    corners = {geo_town[s["ward"]]: np.array(s["rings"][0]).reshape(-1, 2) for s in shapes}
    centres = {w: c[:-1].mean(axis=0) for w, c in corners.items()}
    for c in corners.values():
        assert len(c) == 5 and ((0 <= c) & (c <= 1)).all()
    xs = [centres[w][0] for w in geo_town[:4]]
    assert xs == sorted(xs)
    # one box south of another (GeoJSON in degrees, read back in UTM metres: a slight tilt)
    assert centres["Abbey"][0] == pytest.approx(centres["Elmwood"][0], abs=0.03)
    assert centres["Abbey"][1] > centres["Elmwood"][1]  # picture y runs downwards
    sides = np.ptp(corners["Abbey"], axis=0) * [1, frame.aspect]  # equal scale: squares
    assert sides[0] == pytest.approx(sides[1], rel=0.02)
    assert {t["text"] for t in json.loads(labels)["texts"]} == set(geo_town)
    # the fills are the scale's colour of each ward's rate now, in the engine's ward order
    green = colormaps[figures.MAP_CMAP]
    assert json.loads(figures.map_fills(m)) == [to_hex(green(r)) for r in m.engine.ward_rates()]
    assert figures.map_frame(levers.make_model(rng=4))[0] is frame  # drawn once


def test_a_step_recolours_the_map_and_sends_only_fills(geo_town, monkeypatch):
    import ipywidgets
    from mesa.visualization.utils import force_update

    made = []
    monkeypatch.setattr(page, "make_model", lambda: made.append(levers.VizModel()) or made[-1])
    box, rc = solara.render(page.Page(), handle_error=False)
    try:
        canvases = rc.find(page.PlotCanvas).widgets
        assert len(canvases) == 3
        (mapped,) = [c for c in canvases if c.shapes]
        (model,) = made
        image, shapes, marks, fills = mapped.image, mapped.shapes, mapped.marks, mapped.fills
        assert any("adoption by ward on the map" in text for text in html_texts(rc))
        created = []
        ipywidgets.Widget.on_widget_constructed(lambda w: created.append(type(w).__name__))
        for _ in range(8):
            model.step()
            force_update()
        assert (mapped.image, mapped.shapes, mapped.marks) == (image, shapes, marks)
        assert mapped.fills != fills and mapped.fills == figures.map_fills(model)
        assert created == []
    finally:
        ipywidgets.Widget._widget_construction_callback = None
        rc.close()
