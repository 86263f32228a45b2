"""Launching builds: plan (the one planning core: engines asked, ranked, a command), fit (does a build fit a
machine; the `auto` pick), ports, spawns (server processes and the notes of unrecorded ones), start (run a
plan here and wait for it), deployments (the recorded servers: ps, find, stop, logs).

Named `launching`, not `launch`: `registry.launch` is the Python API's function (registry/__init__.py), which a
subpackage of that name would shadow."""
