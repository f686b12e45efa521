"""N-CARS, ASL-DVS and the DAVIS346 action-recognition set.

N-CARS (Sironi et al. 2018): official ``n-cars_train/`` and ``n-cars_test/`` folders of Prophesee
``.dat`` files, classes background = 0, cars = 1 (tonic's order), 100x120.
ASL-DVS (Bi et al. 2019): ``<letter>/<letter>_NNNN.mat``, 24 letters; no official split: a seeded
(seed 0) stratified 80 / 20 split, the common choice. Sensor 180x240.
Action recognition (Miao et al. 2019, PAF, DAVIS346 AEDAT 2.0): no official layout or split; spikemask
expects ``<action>/<file>.aedat`` with the 10 folder names below and uses a seeded stratified 80 / 20
split. Sensor 260x346.
"""

from __future__ import annotations

import numpy as np

from ..event_dataset import EventFrameDataset, EventSample, stratified_split
from ..formats.aedat2 import read_davis346
from ..formats.asl_mat import read_asl_mat
from ..formats.prophesee_dat import read_prophesee_dat

SPLIT_SEED, TEST_FRACTION = 0, 0.2


def _folder_samples(root, classes, pattern) -> list[EventSample]:
    return [EventSample(f, label) for label, c in enumerate(classes) for f in sorted((root / c).glob(pattern))]


def _seeded_split(samples: list[EventSample], split: str) -> list[EventSample]:
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return [samples[i] for i in stratified_split(labels, split, TEST_FRACTION, SPLIT_SEED)]


class NCARS(EventFrameDataset):
    name = folder = "ncars"
    layout = "  n-cars_train/{background,cars}/*.dat and n-cars_test/{background,cars}/*.dat"
    source = "https://www.prophesee.ai/2018/03/13/dataset-n-cars/ (Prophesee research licence)"

    def _samples(self, split: str) -> list[EventSample]:
        return _folder_samples(self.root / f"n-cars_{split}", self.info.class_names, "*.dat")

    def _read(self, sample: EventSample):
        return read_prophesee_dat(sample.file, self.info.sensor_size)


class ASLDVS(EventFrameDataset):
    name = folder = "asl_dvs"
    layout = "  <letter>/<letter>_NNNN.mat   for the 24 letters a ... y without j (j and z need motion)"
    source = "the ASL-DVS authors (Bi et al., ICCV 2019; mirror: OpenI/ASLDVS); no licence stated"

    def _samples(self, split: str) -> list[EventSample]:
        return _seeded_split(_folder_samples(self.root, self.info.class_names, "*.mat"), split)

    def _read(self, sample: EventSample):
        return read_asl_mat(sample.file)


class ActionRecognition(EventFrameDataset):
    name = folder = "action_recognition"
    layout = "  <action>/<recording>.aedat   with the 10 folders arm_crossing, get_up, jumping, kicking,\n" \
             "  picking_up, sit_down, throwing, turning_around, walking, waving"
    source = "the PAF benchmark (github.com/CrystalMiaoshu/PAFBenchmark); no licence stated"

    def _samples(self, split: str) -> list[EventSample]:
        return _seeded_split(_folder_samples(self.root, self.info.class_names, "*.aedat"), split)

    def _read(self, sample: EventSample):
        return read_davis346(sample.file)
