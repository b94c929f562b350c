"""Training crops: cached preprocessed cases, random ROI crops (tumour-centred with a set probability), flips and
intensity jitter. Each item's randomness is seeded from (run seed, epoch, case index), so results do not depend on
worker count or on resuming."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)
from torch.utils.data import Dataset

from volrob.data.labels import canonical_to_regions
from volrob.data.preprocess import Preprocessed
from volrob.training.config import AugmentSection


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one (epoch, case) draw, independent of iteration order."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def crop_transforms(aug: AugmentSection, roi: tuple[int, int, int], crops: int) -> Compose:
    """Pad to the ROI, sample ``crops`` ROI crops, random flips on every axis, intensity scale and shift."""
    keys = ["image", "label"]
    steps = [
        SpatialPadd(keys=keys, spatial_size=roi),
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=roi, pos=aug.pos_fraction,
                               neg=1.0 - aug.pos_fraction, num_samples=crops, image_key="image",
                               image_threshold=0.0, allow_smaller=True),
        *(RandFlipd(keys=keys, prob=aug.flip_prob, spatial_axis=ax) for ax in range(3)),
        RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=aug.intensity_prob),
        RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=aug.intensity_prob),
    ]
    return Compose(steps)


class CropDataset(Dataset):
    """Item ``i`` -> ``(images (n, C, *roi), targets (n, K, *roi))`` for case ``i``; ``set_epoch`` reseeds."""

    def __init__(self, loaders: list[Callable[[], Preprocessed]], *, aug: AugmentSection, roi: tuple[int, int, int],
                 crops: int, output_mode: str, seed: int, cache: bool = True) -> None:
        self.loaders = loaders
        self.transforms = crop_transforms(aug, roi, crops)
        self.output_mode = output_mode
        self.seed = seed
        self.epoch = 0
        self.cache = cache
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.loaders)

    def case(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed (image, canonical label) as plain tensors, cached when asked."""
        if index in self._cache:
            return self._cache[index]
        pre = self.loaders[index]()
        if pre.label is None:
            raise ValueError("training cases need labels")
        pair = (pre.image.as_tensor().float(), pre.label.as_tensor())
        if self.cache:
            self._cache[index] = pair
        return pair

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.case(index)
        self.transforms.set_random_state(seed=item_seed(self.seed, self.epoch, index))
        samples = self.transforms({"image": image, "label": label})
        images = torch.stack([torch.as_tensor(s["image"]).float() for s in samples])
        labels = torch.stack([torch.as_tensor(s["label"]) for s in samples]).round().to(torch.uint8)
        if self.output_mode == "regions":
            return images, canonical_to_regions(labels).float()
        return images, labels.long()


def collate_crops(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the crops of several cases into one batch."""
    return torch.cat([b[0] for b in batch]), torch.cat([b[1] for b in batch])
