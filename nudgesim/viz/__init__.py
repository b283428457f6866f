"""Browser visualisation (``nudgesim viz``), a Mesa SolaraViz page over
:class:`~nudgesim.model.NudgeModel`, in four layers that import only downwards: ``levers``
(scenario files, the page's levers, :class:`~nudgesim.viz.levers.VizModel`, the model a
session builds) → ``figures`` (the cached layout, the static pictures drawn once per model
and the small overlays redrawn per step) → ``page`` (the canvas widget, the views, the
summary and :func:`~nudgesim.viz.page.Page`) → ``server`` (the Host-header check and
:func:`~nudgesim.viz.server.serve`, which hands solara ``nudgesim.viz.page:Page`` by name).
"""
