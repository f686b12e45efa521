"""Data: event formats, framing, the DVS emulator, the bundled N-Digits set, the papers' data sets.

``get_dataset(name, split=..., T=...)`` returns a torch ``Dataset`` whose items are
``(float32 [T, 2, H, W] event-count frames, int label)`` for event sets and ``(float32 [3, H, W], int)``
for image sets (``[1, H, W]`` for the bundled ``digits``); ``dataset_info(name)`` describes a set without
touching the disk, ``input_info(name, options)`` as its options present it (``representation: voxel`` turns
event samples into ``[2 * bins, H, W]`` images).
"""

from __future__ import annotations

from .dvs_emulator import EmulatorConfig, emulate_saccades, saccade_offsets
from .events import EVENT_DTYPE, EventFileError, check_events, make_events
from .formats.atis import read_atis_bin, write_atis_bin
from .frames import events_to_frames
from .ndigits import NDigits, ensure_ndigits, load_digit_images, ndigits_split, read_manifest
from .paths import default_data_root
from .registry import DatasetInfo, dataset_info, get_dataset, input_info, list_datasets, register_dataset

__all__ = [
    "DatasetInfo",
    "EVENT_DTYPE",
    "EmulatorConfig",
    "EventFileError",
    "NDigits",
    "check_events",
    "dataset_info",
    "default_data_root",
    "emulate_saccades",
    "ensure_ndigits",
    "events_to_frames",
    "get_dataset",
    "input_info",
    "list_datasets",
    "load_digit_images",
    "make_events",
    "ndigits_split",
    "read_atis_bin",
    "read_manifest",
    "register_dataset",
    "saccade_offsets",
    "write_atis_bin",
]


def _register_all() -> None:
    # readers are imported when a set is first built, not when spikemask.data is imported
    sets = "spikemask.data.sets"

    def events(name, target, size, summary, num_classes, classes=()):
        register_dataset(DatasetInfo(name=name, num_classes=num_classes, in_channels=2, sensor_size=size,
                                     class_names=tuple(classes), summary=summary), f"{sets}.{target}")

    register_dataset(DatasetInfo(name="ndigits", num_classes=10, in_channels=2, sensor_size=(32, 32),
                                 class_names=tuple(str(d) for d in range(10)),
                                 summary="bundled: scikit-learn digits through a DVS emulator"), NDigits)
    register_dataset(DatasetInfo(name="digits", num_classes=10, in_channels=1, sensor_size=(32, 32), kind="images",
                                 class_names=tuple(str(d) for d in range(10)),
                                 summary="bundled: N-Digits' scikit-learn digits as static images"),
                     f"{sets}.digits:Digits")
    events("cifar10dvs", "cifar10dvs:CIFAR10DVS", (128, 128), "CIFAR10-DVS, AEDAT 2.0", 10,
           ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"))
    events("dvs128_gesture", "dvs128_gesture:DVS128Gesture", (128, 128), "DVS128 Gesture, AEDAT 3.1 clips", 11,
           ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
            "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
            "air_drums", "air_guitar", "other_gestures"))
    events("nmnist", "atis_sets:NMNIST", (34, 34), "N-MNIST, 40-bit ATIS", 10, [str(d) for d in range(10)])
    events("ncaltech101", "atis_sets:NCaltech101", (180, 240), "N-Caltech101, 40-bit ATIS", 101)
    events("ncars", "other_sets:NCARS", (100, 120), "N-CARS, Prophesee .dat", 2, ("background", "cars"))
    events("asl_dvs", "other_sets:ASLDVS", (180, 240), "ASL-DVS, MATLAB .mat", 24, "abcdefghiklmnopqrstuvwxy")
    events("action_recognition", "other_sets:ActionRecognition", (260, 346),
           "PAF action recognition, DAVIS346 AEDAT 2.0", 10,
           ("arm_crossing", "get_up", "jumping", "kicking", "picking_up", "sit_down", "throwing",
            "turning_around", "walking", "waving"))
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        register_dataset(DatasetInfo(name=name, num_classes=classes, in_channels=3, sensor_size=(32, 32),
                                     kind="images", summary=f"{name.upper()}, python pickle batches"),
                         f"{sets}.images:CIFAR", name=name)
    register_dataset(DatasetInfo(name="imagenet", num_classes=1000, in_channels=3, sensor_size=(224, 224),
                                 kind="images", summary="ILSVRC-2012, class folders (PIL)"), f"{sets}.images:ImageNet")


_register_all()
