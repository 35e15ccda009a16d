"""``python -m accumbug doctor PATH... [--format text|json|github]``: check your own training code, history files
and console logs.

The mechanisms this package teaches, looked for in a user's files: training scripts and
notebooks are read statically, never executed (``code/``); history files
(strict or Python-flavoured JSON, a Keras ``History.history`` dict, an HF
``trainer_state.json``, a Lightning ``metrics.csv``, a run folder of this package) and
console logs are recognised by their content (``history_files.py``, ``consoles.py``); a history
given with a console log is compared with it. Every finding carries a code from a fixed
vocabulary (``findings.py``); ``examine.py`` gathers them, and where a saved file of zeros
or a file that disagrees with its console could come from several mechanisms, says which of
the mechanism gallery's cases fit what was seen (``mechanism_evidence.json``: the gallery's
diagnosis, stored; the doctor imports nothing of ``lessons``). ``formats.py`` prints the report
as text, JSON or GitHub Actions annotations. None of these modules imports torch, matplotlib
or numpy, so the command starts at once, as a pre-commit hook's must (``.pre-commit-hooks.yaml``).
``probe/`` (``doctor --probe FILE.py:CLASS``) is the one part that runs a user's code: it imports
their tracker class, and torch with it, only when asked.
``06_check_your_own_run.ipynb`` shows it on the package's specimens and framework files.
"""
