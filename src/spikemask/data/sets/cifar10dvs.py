"""CIFAR10-DVS (Li et al. 2017): 10 x 1000 AEDAT 2.0 recordings of CIFAR-10 images, DVS128, 128x128.

Split (what Spikformer, Spikingformer and the Masked Spikformer used): SpikingJelly's
``split_to_train_test_set(0.9, dataset, 10)`` over a ``DatasetFolder``, i.e. per class, with the file
names sorted AS STRINGS (cifar10_airplane_0, _1, _10, _100, ...), the first ceil(0.9 n) files train
and the rest test (file indices 91-99 and 909-999 end up in test). ``protocol="tebn"`` gives TEBN's
split instead (indices 0-99 test): a different, easier split, as SpikingJelly warns.

TEBN's split is defined by file names: it links ``<class>/cifar10_<class>_<i>`` for i = 0..99 into test and
100..999 into train, so any other file in a class folder is in neither split. We do the same: under
``protocol="tebn"``, an ``.aedat`` file whose name is not ``cifar10_<class>_<i>.aedat`` is skipped, with one
warning per class folder naming it (the spikformer protocol, like SpikingJelly's ``DatasetFolder``, uses
every ``.aedat`` file).
"""

from __future__ import annotations

import logging
import math
import re

from ..event_dataset import EventFrameDataset, EventSample
from ..formats.aedat2 import read_cifar10dvs

log = logging.getLogger(__name__)


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
                index = self._tebn_indices(name, files)
                keep = [f for f in files if f in index and (index[f] < 100) == (split == "test")]
            else:
                cut = math.ceil(len(files) * 0.9)
                keep = files[:cut] if split == "train" else files[cut:]
            out += [EventSample(f, label) for f in keep]
        return out

    def _tebn_indices(self, name: str, files: list) -> dict:
        """``{file: i}`` for the files named ``cifar10_<name>_<i>.aedat``; warns about (and drops) the others."""
        pattern = re.compile(rf"cifar10_{re.escape(name)}_(\d+)\.aedat")
        index = {f: int(m.group(1)) for f in files if (m := pattern.fullmatch(f.name))}
        others = [f.name for f in files if f not in index]
        if others:
            log.warning("%s: skipping %d file(s) that the TEBN split cannot place (%s%s): expected names "
                        "<class>/cifar10_<class>_<i>.aedat", self.root / name, len(others), ", ".join(others[:3]),
                        ", ..." if len(others) > 3 else "")
        return index

    def _read(self, sample: EventSample):
        return read_cifar10dvs(sample.file)
