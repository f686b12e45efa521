"""N-MNIST and N-Caltech101 (Orchard et al. 2015): saccade recordings in the 40-bit ATIS format.

N-MNIST: the official ``Train/`` and ``Test/`` folders, 34x34. N-Caltech101 has no official split:
as NDA and MST, per class (folders sorted), the first ceil(0.9 n) files (sorted by name) train and
the rest test; sensor 180x240 (SpikingJelly's ``get_H_W``), 101 classes (the folder names).
"""

from __future__ import annotations

import math

from ..event_dataset import EventFrameDataset, EventSample
from ..formats.atis import read_atis_bin


class NMNIST(EventFrameDataset):
    name = folder = "nmnist"
    layout = "  Train/<digit>/<id>.bin and Test/<digit>/<id>.bin   (Train.zip and Test.zip unpacked)"
    source = "https://www.garrickorchard.com/datasets/n-mnist (CC BY-SA 4.0)"

    def _samples(self, split: str) -> list[EventSample]:
        base = self.root / ("Train" if split == "train" else "Test")
        return [EventSample(f, int(d.name)) for d in sorted(base.glob("[0-9]")) for f in sorted(d.glob("*.bin"))]

    def _read(self, sample: EventSample):
        return read_atis_bin(sample.file, self.info.sensor_size)


class NCaltech101(EventFrameDataset):
    name = folder = "ncaltech101"
    layout = "  Caltech101/<class>/image_XXXX.bin   for the 101 class folders (Caltech101.zip unpacked)"
    source = "https://www.garrickorchard.com/datasets/n-caltech101 (CC BY-SA 4.0)"

    def _samples(self, split: str) -> list[EventSample]:
        base = self.root / "Caltech101"
        classes = sorted(d for d in base.iterdir() if d.is_dir()) if base.is_dir() else []
        if classes and len(classes) != self.info.num_classes:
            raise self.missing(f"{len(classes)} class folders in {base}, expected {self.info.num_classes}")
        out = []
        for label, d in enumerate(classes):
            files = sorted(d.glob("*.bin"))
            cut = math.ceil(len(files) * 0.9)
            out += [EventSample(f, label) for f in (files[:cut] if split == "train" else files[cut:])]
        return out

    def _read(self, sample: EventSample):
        return read_atis_bin(sample.file, self.info.sensor_size)
