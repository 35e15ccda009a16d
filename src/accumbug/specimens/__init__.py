"""Deliberately wrong code, kept to be run and compared, never to be copied.

Every module here says what is wrong with its code, where it occurs in the wild, and which
notebook teaches it. The code to copy is in the package's top level (``trackers``,
``history``, ``runfolder``, ``train``); the notebooks' machinery is in ``lessons``.

* ``incident_trackers``: the incident's "broken" and "fixed" trackers and their accumulators;
* ``rank_trackers``: epoch metrics reduced wrongly across torchrun ranks;
* ``gallery_trackers``: trackers whose history goes wrong after the console printed it;
* ``serialisers``: history writers that lose or corrupt values, the incident's among them.
"""
