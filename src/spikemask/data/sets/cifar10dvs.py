"""CIFAR10-DVS (Li et al. 2017): 10 x 1000 AEDAT 2.0 recordings of CIFAR-10 images, DVS128, 128x128.

Split (what Spikformer, Spikingformer and the Masked Spikformer used): SpikingJelly's
``split_to_train_test_set(0.9, dataset, 10)`` over a ``DatasetFolder``, i.e. per class, with the file
names sorted AS STRINGS (cifar10_airplane_0, _1, _10, _100, ...), the first ceil(0.9 n) files train
and the rest test (file indices 91-99 and 909-999 end up in test). ``protocol="tebn"`` gives TEBN's
split instead (indices 0-99 test): a different, easier split, as SpikingJelly warns.
"""

from __future__ import annotations

import math
import re

from ..event_dataset import EventFrameDataset, EventSample
from ..formats.aedat2 import read_cifar10dvs


class CIFAR10DVS(EventFrameDataset):
    name = folder = "cifar10dvs"
    layout = "  <class>/cifar10_<class>_<i>.aedat   for the 10 classes airplane ... truck, i = 0..999\n" \
             "  (the contents of airplane.zip ... truck.zip, each unpacked into the data set folder)"
    source = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (CC BY 4.0)"
    version = 1

    def __init__(self, *args, protocol: str = "spikformer", **kwargs) -> None:
        if protocol not in ("spikformer", "tebn"):
            raise ValueError(f"cifar10dvs protocol must be 'spikformer' or 'tebn', got {protocol!r}")
        self.protocol = protocol
        super().__init__(*args, **kwargs)

    def _samples(self, split: str) -> list[EventSample]:
        out = []
        for label, name in enumerate(self.info.class_names):
            files = sorted((self.root / name).glob("*.aedat"), key=lambda f: f.name)  # string order, as SJ
            if self.protocol == "tebn":
                index = {f: int(re.search(r"_(\d+)\.aedat$", f.name).group(1)) for f in files}
                keep = [f for f in files if (index[f] < 100) == (split == "test")]
            else:
                cut = math.ceil(len(files) * 0.9)
                keep = files[:cut] if split == "train" else files[cut:]
            out += [EventSample(f, label) for f in keep]
        return out

    def _read(self, sample: EventSample):
        return read_cifar10dvs(sample.file)
