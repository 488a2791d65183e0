"""Architecture sources of the small test models (written into their BioImage.IO packages by
``bmz_factory.make_model_package``), shared by the tests and ``galaxy/make_test_data.py``."""

UPSAMPLE_SOURCE = '''
import torch


class Upsample(torch.nn.Module):
    """Nearest-neighbour upsampling by an integer factor on every spatial axis."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        for axis in range(2, x.ndim):
            x = x.repeat_interleave(self.factor, dim=axis)
        return x
'''

THIRDS = '''
import torch


class Thirds(torch.nn.Module):
    """Class k scores -(m - centre_k)^2 / width, m the image mean, up to a term common to all
    classes: a fixed linear layer on the mean; the class is the third of [0, 1] m falls in."""

    def __init__(self, centres=(1 / 6, 1 / 2, 5 / 6), width=0.05):
        super().__init__()
        c = torch.tensor(centres, dtype=torch.float32)
        self.fc = torch.nn.Linear(1, len(centres))
        with torch.no_grad():
            self.fc.weight.copy_((2 * c / width)[:, None])
            self.fc.bias.copy_(-(c**2) / width)

    def forward(self, x):
        return self.fc(x.mean(dim=(1, 2, 3))[:, None])
'''

PIXEL_BCM = '''import torch


class PixelBCM(torch.nn.Module):
    """One 1x1x1 convolution from the image to the channels B, C and M."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, kernel_size=1)

    def forward(self, x):
        return self.conv(x)
'''

PIXEL_FOREGROUND = '''import torch


class PixelForeground(torch.nn.Module):
    """One 1x1 convolution from the normalised image to a foreground logit."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, kernel_size=1)

    def forward(self, x):
        return self.conv(x)
'''

AFFINITY3D = '''import torch


class Affinity3D(torch.nn.Module):
    """Affinities (z, y, x) from a normalised volume: each channel adds a voxel and its
    predecessor along its axis (high only when both are bright)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(x)
'''

CONV3D_3X3X3 = '''
import torch


class Conv3x3x3(torch.nn.Module):
    """A fixed 3x3x3 convolution to three channels (e.g. foreground, contour and mask logits)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1, padding_mode="replicate")

    def forward(self, x):
        return self.conv(x)
'''
