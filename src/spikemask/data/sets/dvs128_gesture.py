"""DVS128 Gesture (Amir et al. 2017): AEDAT 3.1 recordings cut into labelled clips, 128x128, 11 classes.

The official split: the recordings named in ``trials_to_train.txt`` (users 01-23) and
``trials_to_test.txt`` (users 24-29); each row of a recording's ``*_labels.csv`` is one clip
``start <= t < end`` (SpikingJelly's protocol: 1176 train / 288 test clips). Labels are the csv's
class 1..11 minus one (SpikingJelly's folder-name quirk would map class 11 to index 2; we do not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..event_dataset import EventFrameDataset, EventSample
from ..formats.aedat3 import read_aedat31, read_gesture_labels, read_trials


class DVS128Gesture(EventFrameDataset):
    name = folder = "dvs128_gesture"
    layout = "  userXX_<lighting>.aedat and userXX_<lighting>_labels.csv for every recording,\n" \
             "  trials_to_train.txt and trials_to_test.txt   (the contents of DvsGesture.tar.gz's DvsGesture/)"
    source = "https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz, CC BY 4.0)"
    version = 1

    def _samples(self, split: str) -> list[EventSample]:
        trials = self.root / f"trials_to_{split}.txt"
        if not trials.is_file():
            raise self.missing(f"{trials.name} not found")
        out = []
        for name in read_trials(trials):
            recording = self.root / name
            labels_csv = recording.with_name(recording.stem + "_labels.csv")
            if not recording.is_file() or not labels_csv.is_file():
                raise self.missing(f"{recording.name} or {labels_csv.name} (listed in {trials.name}) not found")
            out += [EventSample(recording, int(r["label"]), int(r["start_us"]), int(r["end_us"]))
                    for r in read_gesture_labels(labels_csv)]
        return out

    def _read(self, sample: EventSample) -> np.ndarray:
        events = self._recording(sample.file)
        lo, hi = np.searchsorted(events["t"], [sample.start_us, sample.end_us], side="left")
        return events[lo:hi]

    def _recording(self, path: Path) -> np.ndarray:
        # the clips of one recording are consecutive samples: read each recording once
        if getattr(self, "_last", (None,))[0] != path:
            self._last = (path, read_aedat31(path))
        return self._last[1]
