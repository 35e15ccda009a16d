"""The teaching machinery of the notebooks: what they show, measured and drawn.

Nothing here is code to copy into a training loop (that is the package's top level) or a
bug kept on purpose (that is ``specimens``). Each module feeds one or more notebooks:

* ``incident``: the write-up's own numbers, quoted;
* ``streams``: loss streams replayed without training; ``weights``: weights compared bit
  for bit; ``tables`` and ``plots``: the console-vs-file tables and figures
  (``01``, ``02``, ``05``);
* ``mechanisms``: the gallery and its diagnosis; ``audit``: the write-up's claims measured,
  on the recorded run in ``recorded/`` (``03``);
* ``widgets``: the explorer (``04``); ``exercises``: the exercises' checks.
"""
