"""Stored results: the SQLite results database (:mod:`.db`), sweeps that fill it (:mod:`.sweep`), probes of a
trained model's spikes (:mod:`.probes`) and reports built from the database alone (:mod:`.report`).

What a sweep stores per run (``runs`` row: the resolved config, model, family, T, trained ratio, training seed,
parameters, wall time, machine) and per evaluation (``evaluations`` rows, one per mask seed; ``mask_seed`` is
NULL when no mask is active):

- ``kind = "as_trained"``: the run's own masks (``mask_ratio`` = the trained ratio), accuracy on the whole test
  split, energy on the sweep's energy sample (``layers``, ``masks``, ``neurons`` rows with it).
- ``kind = "inference"``: an unmasked run (trained ratio 0) with Random Spike Masking switched on at inference
  only, on one group of sites (``masked``: ``attention``, ``MLP``, ``tokenizer``, ...) at ``mask_ratio``
  (MST Fig. 5), with energy.
- ``kind = "blocks"``: an unmasked run masked at inference on its default sites in its first ``blocks`` blocks
  at ``mask_ratio`` (MST Fig. 6), accuracy only.

Artifacts per run: ``probes`` (:func:`spikemask.results.probes.collect_probes`: spike maps per time step at
several ratios, histograms of the values entering each synaptic layer, firing rate per layer and step).
"""

from .db import ResultsDB, ResultsError, merge_databases

__all__ = ["ResultsDB", "ResultsError", "merge_databases"]
